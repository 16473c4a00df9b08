"""Frequency caps: the recipient's calendar for days and weeks, any window for shorter
caps, counted once per notification across crashes, and rebuilt from SQL after Redis
lost its data. Real Redis and SQL; the planning runs in this process so a crash can be
placed exactly between the Redis count and the SQL commit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import update
from sqlmodel import col, select

from engine.catalog import categories, recipients
from engine.pipeline import accept, caps, planning
from engine.pipeline.counters import CapCheck, Counters, CountersLost
from engine.pipeline.policy import cap_frees_at, cap_window
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.notifications import NotificationIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent, PlanChunk
from engine.store.redis_keys import RedisKeys
from engine.timeutil import aware
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from preferences import store
from preferences.model import Cap
from tests.conftest import COUNTERS_DB, REDIS_PORT
from tests.engine.conftest import Processes, recipient, send_and_settle

LA = "America/Los_Angeles"
DAY = Cap(1, 86400)
WEEK = Cap(1, 7 * 86400)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_day_and_week_caps_follow_the_recipients_calendar() -> None:
    # 15:58 and 16:02 in Los Angeles are one day there, though UTC's date changes between.
    for at in (utc("2026-11-30T23:58"), utc("2026-12-01T00:02")):
        assert cap_window(DAY, LA, at) == (utc("2026-11-30T08:00"), True)
    assert cap_frees_at(DAY, LA, utc("2026-11-30T23:58")) == utc("2026-12-01T08:00")
    # Daylight-saving days are 23 and 25 hours long.
    spring = cap_window(DAY, LA, utc("2026-03-08T20:00"))[0]
    assert cap_frees_at(DAY, LA, spring) - spring == timedelta(hours=23)
    fall = cap_window(DAY, LA, utc("2026-11-01T20:00"))[0]
    assert cap_frees_at(DAY, LA, fall) - fall == timedelta(hours=25)
    # A week runs from local Monday 00:00: Thursday 2026-12-03 counts from Monday the 30th.
    assert cap_window(WEEK, LA, utc("2026-12-03T12:00")) == (utc("2026-11-30T08:00"), True)
    assert cap_frees_at(WEEK, LA, utc("2026-12-03T12:00")) == utc("2026-12-07T08:00")
    # Three days: today and the two before it.
    three = Cap(2, 3 * 86400)
    assert cap_window(three, "Asia/Shanghai", utc("2026-12-03T12:00")) == (
        utc("2026-11-30T16:00"),
        True,
    )


@pytest.fixture
def counters(redis_client: redis.Redis) -> Iterator[Counters]:
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB)
    found = Counters(client, RedisKeys("test-caps"))
    found.mark_ready(datetime.now(UTC))
    yield found
    found.close()


def one(member: str, *limits: tuple[str, Cap], zone: str = LA) -> list[CapCheck]:
    return [CapCheck("u-1", member, zone, limits)]


def test_an_hourly_cap_holds_for_any_hour(counters: Counters) -> None:
    twice = ("c:promo", Cap(2, 3600))
    assert counters.admit(one("1", twice), utc("2026-12-01T10:58")) == [None]
    assert counters.admit(one("2", twice), utc("2026-12-01T10:59")) == [None]
    # A fixed clock hour would start afresh at 11:00; any hour ending 11:01 holds two.
    assert counters.admit(one("3", twice), utc("2026-12-01T11:01")) == [utc("2026-12-01T11:58")]
    # The deferral's due time is exactly when the cap frees up: admitted then, not before.
    assert counters.admit(one("3", twice), utc("2026-12-01T11:57:59")) == [utc("2026-12-01T11:58")]
    assert counters.admit(one("3", twice), utc("2026-12-01T11:58")) == [None]
    assert counters.admit(one("4", twice), utc("2026-12-01T11:58:30")) == [utc("2026-12-01T11:59")]


def test_a_day_cap_frees_up_at_local_midnight(counters: Counters) -> None:
    daily = ("g", DAY)
    assert counters.admit(one("1", daily), utc("2026-11-30T23:58")) == [None]
    assert counters.admit(one("2", daily), utc("2026-12-01T00:02")) == [utc("2026-12-01T08:00")]
    assert counters.admit(one("2", daily), utc("2026-12-01T08:00")) == [None]


def test_a_notification_counts_once_however_often_it_is_asked(counters: Counters) -> None:
    daily = ("g", DAY)
    at = utc("2026-12-01T18:00")
    assert counters.admit(one("7", daily), at) == [None]
    assert counters.admit(one("7", daily), at + timedelta(minutes=1)) == [None]  # a replay
    assert counters.admit(one("8", daily), at + timedelta(minutes=2)) != [None]
    assert counters.client.zcard(counters.keys.cap("u-1", "g")) == 1


def test_counting_refuses_when_redis_lost_its_data(counters: Counters) -> None:
    counters.client.flushdb()
    with pytest.raises(CountersLost):
        counters.admit(one("1", ("g", DAY)), utc("2026-12-01T18:00"))
    assert counters.client.dbsize() == 0  # nothing counted on top of the lost counts


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


def _setup_capped_recipient(db: Database) -> None:
    with db.session() as session:
        categories.upsert(
            session,
            "promo.sale",
            CategoryIn(
                name="Sale",
                kind="promotional",
                priority="high",
                channels=["inapp"],
                templates={"inapp": {"en": {"title": "sale", "body": "today"}}},
            ),
        )
        recipients.upsert(session, "u-1", RecipientIn())
    with db.session() as session:
        store.update(
            session,
            "u-1",
            PreferencesIn.model_validate(
                {"caps": [{"count": 1, "per": "1d"}], "quiet_hours": {"enabled": False}}
            ),
            categories=store.load_categories(session),
        )


def _promotion(rt: Runtime) -> int:
    with rt.db.session() as session:
        spec = NotificationIn(category="promo.sale", to=["u-1"])
        return accept.accept(session, spec, settings=rt.settings).id


def _fates(db: Database) -> list[tuple[int, str, str | None]]:
    with db.session() as session:
        rows = session.exec(
            select(Delivery.notification_id, Delivery.status, Delivery.reason).order_by(
                col(Delivery.notification_id)
            )
        )
        return [(n, s, r) for n, s, r in rows]


def test_a_crash_between_counting_and_writing_counts_nothing_twice(
    rt: Runtime, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _setup_capped_recipient(db)
    first = _promotion(rt)
    real_insert = bulk.insert_ignore

    def crash(session: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        if model is Delivery:  # after the caps were counted, before the deliveries commit
            raise RuntimeError("worker killed")
        return real_insert(session, model, *args, **kwargs)

    monkeypatch.setattr(bulk, "insert_ignore", crash)
    planning.plan(rt, first)  # planned inline, it dies; the chunk is left to a job of its own
    assert _fates(db) == []
    with pytest.raises(RuntimeError):
        planning.plan_chunk(rt, first, 0)  # ...which dies the same way once
    assert _fates(db) == []
    monkeypatch.setattr(bulk, "insert_ignore", real_insert)
    with rt.db.session() as session:  # the scheduler takes the chunk back; its job is retried
        session.execute(
            update(PlanChunk)
            .where(col(PlanChunk.notification_id) == first)
            .values(status="pending")
        )
    planning.plan_chunk(rt, first, 0)
    second = _promotion(rt)
    planning.plan(rt, second)
    assert _fates(db) == [(first, "delivered", None), (second, "suppressed", "capped")]
    assert rt.counters.client.zrange(rt.counters.keys.cap("u-1", "g"), 0, -1) == [
        str(first).encode()
    ]


def test_counters_lost_are_rebuilt_from_sql(rt: Runtime, db: Database) -> None:
    _setup_capped_recipient(db)
    first = _promotion(rt)
    planning.plan(rt, first)
    rt.counters.client.flushdb()  # the counters' Redis restarted empty
    second = _promotion(rt)
    planning.plan(rt, second)
    assert _fates(db) == [(first, "delivered", None), (second, "suppressed", "capped")]
    assert rt.counters.ready()
    assert caps.rebuild(rt) == 0  # already complete: nothing to do


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_rebuilt_count_keeps_the_moment_an_inbox_copy_was_stored(
    rt: Runtime, db: Database
) -> None:
    _setup_capped_recipient(db)
    first = _promotion(rt)
    planning.plan(rt, first)
    with db.session() as session:
        (delivery,) = session.exec(select(Delivery).where(col(Delivery.notification_id) == first))
        history = session.exec(
            select(DeliveryEvent.status).where(col(DeliveryEvent.delivery_id) == delivery.id)
        ).all()
    assert history == ["delivered"]  # stored delivered: one row tells it went and arrived
    key = rt.counters.keys.cap("u-1", "g")
    counted = rt.counters.client.zscore(key, str(first))
    rt.counters.client.flushdb()
    caps.rebuild(rt)
    assert rt.counters.client.zscore(key, str(first)) == counted
    assert counted == pytest.approx(aware(delivery.created_at).timestamp(), abs=0.001)


def test_one_promotion_a_day_survives_a_redis_restart(
    admin: httpx.Client, pipeline: Processes, settings: Settings
) -> None:
    admin.put(
        "/v1/categories/promo.sale",
        json={
            "name": "Sale",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "sale", "body": "today"}}},
        },
    ).raise_for_status()
    recipient(admin, "u-1")
    admin.put(
        "/v1/recipients/u-1/preferences", json={"caps": [{"count": 1, "per": "1d"}]}
    ).raise_for_status()

    def fate() -> tuple[str, str | None]:
        view = send_and_settle(admin, category="promo.sale", to=["u-1"])
        return view["deliveries"][0]["status"], view["deliveries"][0]["reason"]

    assert fate() == ("delivered", None)
    counters = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB)
    counters.flushdb()  # the test's own counters database only
    counters.close()
    assert fate() == ("suppressed", "capped")


def test_the_counters_live_in_their_own_database(rt: Runtime, settings: Settings) -> None:
    assert rt.counters.client.connection_pool.connection_kwargs["db"] == COUNTERS_DB
    assert settings.redis_url.endswith(f"/{COUNTERS_DB - 1}")
