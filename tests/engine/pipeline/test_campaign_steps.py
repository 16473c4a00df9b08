"""Campaign steps planned out of order: when a later step was planned first (both fell
due together), the earlier one arriving after it leaves nothing waiting beside it."""

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
from engine.store.models import Delivery
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
