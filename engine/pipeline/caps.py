"""Frequency caps: what counts against which cap, checked for a whole chunk or release at
once, and rebuilt from SQL when the counters' Redis lost its data.

SQL is the source of truth for what was sent; the Redis counters (`engine.pipeline.counters`)
are a fast copy of it. A notification counts once per recipient, at the moment its
first delivery to them goes out. When Redis restarted empty, a recipient capped at one
promotion a day must not get a second: the counters are rebuilt from the deliveries
written in SQL before anything is counted again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, func
from sqlmodel import Session, col, select

from engine.pipeline import policy
from engine.pipeline.counters import CapCheck, Counted, CountersLost
from engine.store import bulk
from engine.store.models import Category, Delivery, DeliveryEvent, Preference
from engine.store.states import COUNTED, EventStatus
from engine.timeutil import aware, now
from engine.worker.runtime import Runtime
from preferences.model import Cap, EffectivePreferences

log = logging.getLogger("tidings.caps")
# How far back a rebuild reads: the longest cap a recipient can choose on the preference
# page (30 days, after repeated 👎) and then some; longer category caps extend it.
HORIZON = timedelta(days=32)
REBUILD_LOCK_SECONDS = 300
WAIT_FOR_REBUILD_SECONDS = 30.0


def check(
    rules: policy.Rules,
    prefs: EffectivePreferences,
    notification_id: int,
    activity: str | None = None,
) -> CapCheck | None:
    """The caps one notification to one recipient of `activity` (`active`, `sleeping`,
    `churned`) must pass, or None if none applies."""
    limits = policy.cap_limits(rules, prefs, activity)
    if not limits:
        return None
    return CapCheck(prefs.recipient_id, str(notification_id), prefs.quiet_hours.timezone, limits)


def check_many(
    rules: policy.Rules,
    notification_id: int,
    recipients: Iterable[tuple[str, EffectivePreferences, str | None]],
) -> list[CapCheck]:
    """`check` for many (recipient id, preferences, activity), for recipients of one
    notification: the caps are worked out once per preferences object and activity, so
    recipients who share their preferences (`preferences.store.shared`) share their
    limits. Those under no cap are left out."""
    member = str(notification_id)
    limits: dict[tuple[int, str | None], list[tuple[str, Cap]]] = {}
    out: list[CapCheck] = []
    for rid, prefs, activity in recipients:
        found = limits.get((id(prefs), activity))
        if found is None:
            # The preferences stay alive for the call, so no identity is reused.
            found = limits[(id(prefs), activity)] = policy.cap_limits(rules, prefs, activity)
        if found:
            out.append(CapCheck(rid, member, prefs.quiet_hours.timezone, found))
    return out


def admit(rt: Runtime, checks: Sequence[CapCheck], at: datetime) -> list[datetime | None]:
    """Count what is under every cap (once per notification and recipient, however often
    asked); for each check None if admitted, else when its cap frees up. Rebuilds the
    counters from SQL first when Redis lost them."""
    try:
        return rt.counters.admit(checks, at)
    except CountersLost:
        rebuild(rt)
        return rt.counters.admit(checks, at)


def rebuild(rt: Runtime) -> int:
    """Restore the counters from the deliveries in SQL; one process does it while the
    others wait for it. Returns the number of entries this process wrote.

    Raises `CountersLost` if another process holds the rebuild longer than we wait.
    """
    counters = rt.counters
    if not counters.lock_rebuild(REBUILD_LOCK_SECONDS):
        deadline = time.monotonic() + WAIT_FOR_REBUILD_SECONDS
        while not counters.ready():
            if time.monotonic() > deadline:
                raise CountersLost("the counters are being rebuilt by another process")
            time.sleep(0.05)
        return 0
    try:
        if counters.ready():
            return 0
        started = now()
        with rt.db.session() as session:
            horizon = _horizon(session)
            written = counters.restore(counted_since(session, started - horizon), _ttl(horizon))
        counters.mark_ready(now())
        # Chunks that counted before Redis lost its data and committed while we read.
        with rt.db.session() as session:
            written += counters.restore(
                counted_since(session, started - timedelta(minutes=5)), _ttl(horizon)
            )
        log.warning("rebuilt the cap counters from SQL", extra={"entries": written})
        return written
    finally:
        counters.unlock_rebuild()


def _ttl(horizon: timedelta) -> int:
    return int(horizon.total_seconds()) + 86400


def _horizon(session: Session) -> timedelta:
    longest = 0
    for caps, by_activity in session.exec(select(Category.caps, Category.caps_by_activity)):
        for group in (caps, *(by_activity or {}).values()):
            longest = max([longest, *(int(c["per"]) for c in group or ())])
    return max(HORIZON, timedelta(seconds=longest + 86400))


def counted_since(session: Session, since: datetime) -> Iterator[Counted]:
    """Every (recipient, counter, notification) counted since `since`, at the time the
    notification's first delivery to the recipient went out.

    A delivery went out when it was `queued` (its event), or, with no such event, when
    it was written: an inbox copy stored as it was planned has one event, `delivered`,
    at the moment it was written."""
    categories = {c.key: policy.rules_of(c) for c in session.exec(select(Category))}
    went_out = func.coalesce(col(DeliveryEvent.at), col(Delivery.created_at))
    queued = and_(
        col(DeliveryEvent.delivery_id) == col(Delivery.id),
        col(DeliveryEvent.status) == EventStatus.QUEUED,
    )
    rows = session.execute(
        select(
            Delivery.recipient_id, Delivery.notification_id, Delivery.category, func.min(went_out)
        )
        .outerjoin(DeliveryEvent, queued)
        .where(went_out >= since, col(Delivery.status).in_(COUNTED))
        .group_by(col(Delivery.recipient_id), col(Delivery.notification_id), col(Delivery.category))
    ).all()
    own = _recipient_caps(session, {r[0] for r in rows})
    for recipient_id, notification_id, key, at in rows:
        rules = categories.get(key)
        stamp = aware(at)
        if rules is None or stamp is None:
            continue
        for counter in _counters(rules, recipient_id, own):
            yield Counted(recipient_id, counter, str(notification_id), stamp)


def _recipient_caps(
    session: Session, recipient_ids: Iterable[str]
) -> dict[str, tuple[bool, frozenset[str]]]:
    """For recipients who stored preferences: (has a global cap, categories they capped)."""
    ids = list(recipient_ids)
    out: dict[str, tuple[bool, frozenset[str]]] = {}
    for start in range(0, len(ids), 10_000):
        for row in bulk.read(
            session, Preference, col(Preference.recipient_id).in_(ids[start : start + 10_000])
        ):
            capped = frozenset(
                key for key, choice in (row.categories or {}).items() if choice.get("caps")
            )
            out[row.recipient_id] = (row.caps is None or bool(row.caps), capped)
    return out


def _counters(
    rules: policy.Rules, recipient_id: str, own: dict[str, tuple[bool, frozenset[str]]]
) -> Iterator[str]:
    """The counters a notification of this category draws on (as `policy.cap_limits`)."""
    if not policy.capped_scope(rules):
        return
    if rules.caps or rules.caps_by_activity:
        yield f"c:{rules.key}"
    if rules.required:
        return
    global_cap, capped = own.get(recipient_id, (True, frozenset()))
    if rules.key in capped:
        yield f"r:{rules.key}"
    if global_cap and rules.under_global_cap:
        yield "g"
