"""Held deliveries decided anew in bulk — at release by the scheduler and just before
sending — against the recipient's preferences then; caps counted when they go out.
Real SQLite, Redis and SMTP; planning, release and sending run in this process so the
moment of each can be chosen."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select

from engine.catalog import categories, recipients
from engine.pipeline import accept, delivery, planning, scheduler
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.notifications import NotificationIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from preferences import store
from tests.engine.acceptance.test_pipeline_rules import _quiet_now, erased_as
from tests.support import Mailbox

ZONE = "Asia/Shanghai"


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


def define(db: Database, key: str, **spec: Any) -> None:
    body: dict[str, Any] = {
        "name": key,
        "kind": "promotional",
        "priority": "high",
        "channels": ["email"],
        "templates": {"email": {"en": {"subject": key, "text": "hello"}}},
        **spec,
    }
    with db.session() as session:
        categories.upsert(session, key, CategoryIn.model_validate(body))


def person(db: Database, rid: str, **prefs: Any) -> None:
    with db.session() as session:
        recipients.upsert(session, rid, RecipientIn(email=f"{rid}@example.com", timezone=ZONE))
    choose(db, rid, **{"quiet_hours": {"enabled": False}, **prefs})


def choose(db: Database, rid: str, **prefs: Any) -> None:
    with db.session() as session:
        store.update(
            session,
            rid,
            PreferencesIn.model_validate(prefs),
            categories=store.load_categories(session),
        )


def notify(rt: Runtime, key: str, to: list[str]) -> int:
    with rt.db.session() as session:
        accepted = accept.accept(session, NotificationIn(category=key, to=to), settings=rt.settings)
    planning.plan(rt, accepted.id)
    return accepted.id


def deliveries(db: Database) -> dict[str, tuple[int, str, str | None, datetime | None]]:
    """recipient:notification → (id, status, reason, due_at)."""
    with db.session() as session:
        rows = session.exec(select(Delivery).order_by(col(Delivery.id)))
        return {
            f"{d.recipient_id}:{d.notification_id}": (
                d.id or 0,
                d.status,
                d.reason,
                d.due_at.replace(tzinfo=UTC) if d.due_at else None,
            )
            for d in rows
        }


def test_just_before_sending_the_preferences_of_now_win(
    rt: Runtime, db: Database, smtp: Mailbox
) -> None:
    define(db, "promo.sale")
    people = ("unsubscribed", "muted", "paused", "quiet", "erased", "kept")
    for rid in people:
        person(db, rid)
    nid = notify(rt, "promo.sale", list(people))
    queued = {key.split(":")[0]: row[0] for key, row in deliveries(db).items()}
    assert {row[1] for row in deliveries(db).values()} == {"queued"}
    # Between planning and the deliver job: every kind of change a recipient can make.
    choose(db, "unsubscribed", unsubscribed=True)
    choose(db, "muted", channels={"email": False})
    choose(db, "paused", paused_until=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    choose(db, "quiet", quiet_hours=_quiet_now(ZONE))
    with db.session() as session:
        recipients.erase(session, "erased")
    delivery.deliver(rt, list(queued.values()))
    fates = {
        erased_as(key.split(":")[0], "erased"): row[1:3] for key, row in deliveries(db).items()
    }
    assert fates == {
        "unsubscribed": ("suppressed", "unsubscribed"),
        "muted": ("suppressed", "opted_out"),
        "paused": ("suppressed", "paused"),
        "quiet": ("scheduled", "quiet_hours"),
        "erased": ("suppressed", "erased"),
        "kept": ("sent", None),
    }
    assert [m["To"] for m in smtp.messages] == ["kept@example.com"]
    held = deliveries(db)[f"quiet:{nid}"][3]
    assert held is not None and held > datetime.now(UTC)


def test_held_notifications_count_against_caps_when_they_go_out(
    rt: Runtime, db: Database, smtp: Mailbox
) -> None:
    define(db, "promo.a")
    define(db, "promo.b")
    define(db, "notice.c", kind="service", over_cap="defer", global_cap=True)
    person(db, "u-1", caps=[{"count": 1, "per": "1d"}], quiet_hours=_quiet_now(ZONE))
    sent = [notify(rt, key, ["u-1"]) for key in ("promo.a", "promo.b", "notice.c")]
    assert {row[2] for row in deliveries(db).values()} == {"quiet_hours"}
    # Nothing went out, so nothing counted: a day cap of one still has room.
    assert rt.counters.client.zcard(rt.counters.keys.cap("u-1", "g")) == 0

    choose(db, "u-1", quiet_hours={"enabled": False})  # the window is over
    at = datetime.now(UTC)
    with db.session() as session:
        for d in session.exec(select(Delivery)):
            d.due_at = at - timedelta(seconds=1)
            session.add(d)
    scheduler.release_deliveries(rt, at)
    fates = deliveries(db)
    assert [fates[f"u-1:{n}"][1:3] for n in sent] == [
        ("queued", None),
        ("suppressed", "capped"),
        ("scheduled", "capped"),
    ]
    # Deferred to exactly when the day cap frees up: local midnight in Shanghai.
    midnight = (at.astimezone(ZoneInfo(ZONE)) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert fates[f"u-1:{sent[2]}"][3] == midnight
    assert rt.counters.client.zrange(rt.counters.keys.cap("u-1", "g"), 0, -1) == [
        str(sent[0]).encode()
    ]
