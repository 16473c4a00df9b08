"""Campaign steps planned out of order: when a later step was planned first (both fell
due together), the earlier one arriving after it leaves nothing waiting beside it; and
while one step plans, another step's chunks wait for it instead of planning alongside."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from sqlmodel import col, select

from engine.pipeline import planning
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, PlanChunk
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_an_earlier_step_planned_after_a_later_one_is_collapsed(
    admin: httpx.Client, rt: Runtime, db: Database
) -> None:
    category = {"name": "Flash", "kind": "promotional", "priority": "high", "channels": ["email"]}
    admin.put("/v1/categories/promo.flash", json=category).raise_for_status()
    admin.put("/v1/recipients/owl", json={"email": "owl@example.com"}).raise_for_status()
    at = datetime.now(UTC)
    quiet = {
        "enabled": True,
        "start": (at - timedelta(hours=1)).strftime("%H:%M"),
        "end": (at + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    admin.put("/v1/recipients/owl/preferences", json={"quiet_hours": quiet}).raise_for_status()
    event = at + timedelta(hours=3)
    ahead = int((event - at).total_seconds())
    created = admin.post(
        "/v1/campaigns",
        json={
            "category": "promo.flash",
            "to": ["owl"],
            "event_at": event.isoformat(),
            "steps": [-(ahead - 2), -(ahead - 3)],
            "content": {"title": "Flash sale", "body": "soon"},
        },
    )
    assert created.status_code == 202, created.text
    first, second = (int(s["notification_id"]) for s in created.json()["steps"])

    with time_machine.travel(at + timedelta(seconds=10)):
        planning.plan(rt, second)
        planning.plan(rt, first)

    with db.session() as session:
        fate = {
            nid: (status, reason)
            for nid, status, reason in session.exec(
                select(Delivery.notification_id, Delivery.status, Delivery.reason).where(
                    col(Delivery.recipient_id) == "owl"
                )
            )
        }
    assert fate == {second: ("scheduled", "quiet_hours"), first: ("suppressed", "collapsed")}


def _campaign(admin: httpx.Client, people: list[str], at: datetime) -> tuple[int, int]:
    """Two steps of one campaign, both due seconds after `at`, to `people` whose quiet hours
    hold every email until after the event's eve: each step's delivery waits."""
    category = {"name": "Flash", "kind": "promotional", "priority": "high", "channels": ["email"]}
    admin.put("/v1/categories/promo.flash", json=category).raise_for_status()
    quiet = {
        "enabled": True,
        "start": (at - timedelta(hours=1)).strftime("%H:%M"),
        "end": (at + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    for rid in people:
        admin.put(f"/v1/recipients/{rid}", json={"email": f"{rid}@example.com"}).raise_for_status()
        admin.put(f"/v1/recipients/{rid}/preferences", json={"quiet_hours": quiet})
    event = at + timedelta(hours=3)
    ahead = int((event - at).total_seconds())
    created = admin.post(
        "/v1/campaigns",
        json={
            "category": "promo.flash",
            "to": people,
            "event_at": event.isoformat(),
            "steps": [-(ahead - 2), -(ahead - 3)],
            "content": {"title": "Flash sale", "body": "soon"},
        },
    )
    assert created.status_code == 202, created.text
    first, second = (int(s["notification_id"]) for s in created.json()["steps"])
    return first, second


def _fates(db: Database) -> dict[tuple[int, str], tuple[str, str | None]]:
    with db.session() as session:
        return {
            (nid, rid): (status, reason)
            for nid, rid, status, reason in session.exec(
                select(
                    Delivery.notification_id,
                    Delivery.recipient_id,
                    Delivery.status,
                    Delivery.reason,
                )
            )
        }


def _chunks(db: Database, notification_id: int) -> list[str]:
    with db.session() as session:
        return list(
            session.exec(
                select(PlanChunk.status)
                .where(col(PlanChunk.notification_id) == notification_id)
                .order_by(col(PlanChunk.seq))
            )
        )


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_step_waits_while_another_step_of_its_campaign_is_planning(
    admin: httpx.Client, settings: Settings, db: Database
) -> None:
    runtime = Runtime(settings.model_copy(update={"plan_chunk_size": 1}), make_broker(settings))
    try:
        at = datetime.now(UTC)
        first, second = _campaign(admin, ["ann", "bob"], at)
        with time_machine.travel(at + timedelta(seconds=10)):
            planning.plan(runtime, second)  # cut into two chunks, one per person
            planning.plan(runtime, first)
            planning.plan_chunk(runtime, second, 0)  # the later step is half planned
            planning.plan_chunk(runtime, first, 0)
            planning.plan_chunk(runtime, first, 1)
            # The earlier step's chunks went back to wait for the later step's turn to end.
            assert _chunks(db, first) == ["pending", "pending"]
            assert {key for key in _fates(db) if key[0] == first} == set()
            planning.plan_chunk(runtime, second, 1)  # the later step is planned: its turn ends
            planning.plan_chunk(runtime, first, 0)
            planning.plan_chunk(runtime, first, 1)
    finally:
        runtime.close()
    assert _chunks(db, first) == ["done", "done"]
    assert _fates(db) == {
        (second, "ann"): ("scheduled", "quiet_hours"),
        (second, "bob"): ("scheduled", "quiet_hours"),
        (first, "ann"): ("suppressed", "collapsed"),
        (first, "bob"): ("suppressed", "collapsed"),
    }


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_step_cancelled_while_planning_hands_the_turn_on(
    admin: httpx.Client, settings: Settings, db: Database
) -> None:
    runtime = Runtime(settings.model_copy(update={"plan_chunk_size": 1}), make_broker(settings))
    try:
        at = datetime.now(UTC)
        first, second = _campaign(admin, ["ann", "bob"], at)
        with time_machine.travel(at + timedelta(seconds=10)):
            planning.plan(runtime, second)
            planning.plan(runtime, first)
            planning.plan_chunk(runtime, second, 0)  # ann has the later step waiting
            cancelled = admin.post(f"/v1/notifications/{second}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            planning.plan_chunk(runtime, first, 0)
            planning.plan_chunk(runtime, first, 1)
    finally:
        runtime.close()
    fates = _fates(db)
    assert fates[(second, "ann")] == ("suppressed", "cancelled")
    assert (second, "bob") not in fates  # its chunk was cancelled before it was planned
    # The cancelled step reached no one: the earlier step still waits for both.
    assert fates[(first, "ann")] == ("scheduled", "quiet_hours")
    assert fates[(first, "bob")] == ("scheduled", "quiet_hours")
