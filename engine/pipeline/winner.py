"""An A/B test slice's winner: chosen when the test's wait ends, and given to the rest.

A notification with `ab_test` sends its variants to a slice of its audience only
(`engine.pipeline.variants.in_slice`); the rest wait as `scheduled/ab_test` deliveries
with no variant, due at the decision time. When that time has come and the notification
is fully planned, the scheduler reads the slice's figures per variant (the same counts as
`GET /v1/stats?by=variant`: deliveries that reached their recipient, and of those the
opened, clicked or converted ones), chooses the variant with the best rate of the test's
metric, records it with the figures, and names it on every waiting delivery. The release
that follows (`engine.pipeline.scheduler.release_deliveries`) decides each one anew, so
preferences, quiet hours, pause, caps and collapse apply as they stand then; a cancel
before the decision has already ended them `suppressed/cancelled`.

The claim is a conditional UPDATE (`ab_decided_at IS NULL`): two schedulers decide once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from engine.pipeline.variants import Variant, variants_of
from engine.store.db import Database
from engine.store.models import Delivery, Notification
from engine.store.states import (
    CLICKED_THROUGH,
    REACHED,
    SEEN,
    DeliveryStatus,
    NotificationStatus,
)
from engine.timeutil import aware, iso, now

log = logging.getLogger("tidings.winner")
# The figure each metric counts, out of `sent`.
COUNTED = {"open_rate": "opened", "click_rate": "clicked", "conversion_rate": "converted"}
BATCH = 100


def choose(
    variants: Sequence[Variant], figures: Mapping[str, Mapping[str, Any]], metric: str
) -> tuple[str, str]:
    """The winning variant's name and the rule that chose it.

    `best`: one variant's rate of `metric` is above every other variant's. `tie`: several
    share the best rate, above zero; the heaviest of them wins, then the first listed.
    `no_data`: there is nothing to go on (no variant's rate is above zero, or a variant
    nobody of the slice was sent cannot be compared); the heaviest variant wins, then the
    first listed. A variant with no sends is never a loser: its rate is unknown."""
    rates = {v.name: (figures.get(v.name) or {}).get(metric) for v in variants}
    heaviest = sorted(variants, key=lambda v: -v.weight)  # stable: first listed among equals
    known = [rate for rate in rates.values() if rate is not None]
    if len(known) < len(variants) or not known or max(known) <= 0:
        return heaviest[0].name, "no_data"
    best = max(known)
    leaders = [v for v in heaviest if rates[v.name] == best]
    return leaders[0].name, "best" if len(leaders) == 1 else "tie"


def figures(session: Session, notification_id: int, metric: str) -> dict[str, dict[str, Any]]:
    """Per variant of the slice: deliveries that reached their recipient (`sent`), how
    many of those did what `metric` counts, and the rate (None when nothing was sent)."""
    counted = COUNTED[metric]
    did: ColumnElement[bool]
    if counted == "opened":
        did = col(Delivery.read_at).is_not(None) | col(Delivery.status).in_(SEEN)
    elif counted == "clicked":
        did = col(Delivery.status).in_(CLICKED_THROUGH)
    else:
        did = col(Delivery.status) == DeliveryStatus.CONVERTED
    reached = col(Delivery.status).in_(REACHED)
    found: dict[str, dict[str, Any]] = defaultdict(dict)
    for name, sent, done in session.exec(
        select(
            Delivery.variant,
            func.sum(case((reached, 1), else_=0)),
            func.sum(case((reached & did, 1), else_=0)),
        )
        .where(col(Delivery.notification_id) == notification_id, col(Delivery.variant).is_not(None))
        .group_by(col(Delivery.variant))
    ):
        sent, done = int(sent or 0), int(done or 0)
        found[str(name)] = {
            "sent": sent,
            counted: done,
            metric: round(done / sent, 4) if sent else None,
        }
    return dict(found)


def decide_due(db: Database, at: datetime | None = None) -> int:
    """Choose the winner of every test slice whose wait has ended, and name it on the
    deliveries waiting for it; returns how many tests were decided."""
    at = at or now()
    due = (
        col(Notification.ab_decide_at) <= at,
        col(Notification.ab_decided_at).is_(None),
        col(Notification.status) == NotificationStatus.PLANNED,
        col(Notification.cancelled_at).is_(None),
    )
    decided = 0
    with db.session() as session:
        ids = list(session.exec(select(Notification.id).where(*due).limit(BATCH)))
    for notification_id in ids:
        assert notification_id is not None
        with db.session() as session:
            decided += _decide(session, notification_id, at)
    return decided


def _decide(session: Session, notification_id: int, at: datetime) -> int:
    notification = session.get(Notification, notification_id)
    if notification is None or not notification.ab_test:
        return 0
    test = dict(notification.ab_test)
    metric = str(test["metric"])
    found = variants_of(notification)
    slice_figures = figures(session, notification_id, metric)
    for v in found:  # a variant nobody of the slice got still shows, with nothing sent
        slice_figures.setdefault(v.name, {"sent": 0, COUNTED[metric]: 0, metric: None})
    winner, rule = choose(found, slice_figures, metric)
    test.update(winner=winner, rule=rule, figures=slice_figures)
    claimed = session.execute(
        update(Notification)
        .where(col(Notification.id) == notification_id, col(Notification.ab_decided_at).is_(None))
        .values(ab_test=test, ab_decided_at=at, updated_at=at)
    )
    if getattr(claimed, "rowcount", 0) != 1:  # another scheduler decided it
        session.rollback()
        return 0
    session.execute(
        update(Delivery)
        .where(
            col(Delivery.notification_id) == notification_id,
            col(Delivery.variant).is_(None),
            col(Delivery.status) == DeliveryStatus.SCHEDULED,
        )
        .values(variant=winner, updated_at=at)
    )
    log.info(
        "A/B test decided",
        extra={"notification_id": notification_id, "winner": winner, "rule": rule},
    )
    return 1


def view(notification: Notification) -> dict[str, Any] | None:
    """A notification's test slice as the API shows it (`AbTestOut`), or None."""
    test = notification.ab_test
    if not test:
        return None
    return {
        "slice": test["slice"],
        "metric": test["metric"],
        "wait": test["wait"],
        "decide_at": iso(aware(notification.ab_decide_at)),
        "decided_at": iso(aware(notification.ab_decided_at)),
        "winner": test.get("winner"),
        "rule": test.get("rule"),
        "figures": test.get("figures"),
    }
