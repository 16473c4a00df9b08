"""Cancelling a notification over HTTP: pending and scheduled deliveries end
`suppressed/cancelled`, sent ones stay, the unplanned part of the audience is never
planned, a second cancel changes nothing, and the scopes hold."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from engine.pipeline import delivery, planning, scheduler
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent, PlanChunk
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from tests.support import Mailbox

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
SALE: dict[str, Any] = {
    "name": "Flash sale",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "templates": {
        "inapp": {"en": {"title": "Sale", "body": "today"}},
        "email": {"en": {"subject": "Sale", "text": "today"}},
    },
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Chunks of two recipients, planned one at a time."""
    return settings.model_copy(update={"plan_chunk_size": 2, "plan_ahead": 1})


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


@pytest.fixture
def shop(admin: httpx.Client) -> httpx.Client:
    admin.put("/v1/categories/promo.sale", json=SALE).raise_for_status()
    for i in range(6):
        rid = f"u-{i}"
        admin.put(f"/v1/recipients/{rid}", json={"email": f"{rid}@example.com"}).raise_for_status()
        admin.put(
            f"/v1/recipients/{rid}/preferences", json={"quiet_hours": {"enabled": False}}
        ).raise_for_status()
    return admin


def send(client: httpx.Client, **extra: Any) -> int:
    answer = client.post("/v1/notifications", json={"category": "promo.sale"} | extra)
    assert answer.status_code == 202, answer.text
    return int(answer.json()["id"])


def rows(db: Database, notification_id: int) -> dict[tuple[str, str], tuple[str, str | None]]:
    with db.session() as session:
        return {
            (d.recipient_id, d.channel): (d.status, d.reason)
            for d in session.exec(
                select(Delivery).where(col(Delivery.notification_id) == notification_id)
            )
        }


def email_ids(db: Database, notification_id: int, status: str) -> list[int]:
    with db.session() as session:
        return [
            d.id or 0
            for d in session.exec(
                select(Delivery).where(
                    col(Delivery.notification_id) == notification_id,
                    col(Delivery.channel) == "email",
                    col(Delivery.status) == status,
                )
            )
        ]


@BOTH
def test_cancel_stops_what_has_not_gone_and_keeps_what_has(
    shop: httpx.Client, rt: Runtime, db: Database, smtp: Mailbox
) -> None:
    nid = send(shop, to={"all": True})
    planning.plan(rt, nid)  # cuts three chunks of two
    planning.plan_chunk(rt, nid, 0)  # u-0, u-1 planned: inbox delivered, email queued
    first = email_ids(db, nid, "queued")
    delivery.deliver(rt, first[:1])  # one email goes out
    assert len(smtp.messages) == 1

    answer = shop.post(f"/v1/notifications/{nid}/cancel")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "cancelled"
    assert body["cancelled"] == 1 and body["chunks_cancelled"] == 2
    after = rows(db, nid)
    assert after[("u-0", "inapp")] == ("delivered", None)
    assert after[(_rid(db, first[0]), "email")] == ("sent", None)
    assert after[(_rid(db, first[1]), "email")] == ("suppressed", "cancelled")
    assert not any(rid in ("u-2", "u-3", "u-4", "u-5") for rid, _ in after)

    # The jobs still in the broker find nothing to do.
    planning.plan_chunk(rt, nid, 1)
    planning.plan_chunk(rt, nid, 2)
    delivery.deliver(rt, first)
    assert rows(db, nid) == after
    assert len(smtp.messages) == 1
    with db.session() as session:
        chunks = session.exec(select(PlanChunk).where(col(PlanChunk.notification_id) == nid))
        assert sorted(c.status for c in chunks) == ["cancelled", "cancelled", "done"]
        events = session.exec(
            select(DeliveryEvent).where(col(DeliveryEvent.delivery_id) == first[1])
        ).all()
        assert [(e.status, e.reason) for e in events][-1] == ("suppressed", "cancelled")

    shown = shop.get(f"/v1/notifications/{nid}").json()
    assert shown["status"] == "cancelled"
    again = shop.post(f"/v1/notifications/{nid}/cancel").json()
    assert again["cancelled"] == 0 and again["chunks_cancelled"] == 0
    assert again["cancelled_at"] == body["cancelled_at"]
    assert again["counts"] == body["counts"]
    listed = shop.get("/v1/notifications", params={"status": "cancelled"}).json()
    assert [n["id"] for n in listed["items"]] == [str(nid)]


def _rid(db: Database, delivery_id: int) -> str:
    with db.session() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        return row.recipient_id


def test_scheduled_deliveries_and_future_notifications_are_cancelled(
    shop: httpx.Client, rt: Runtime, db: Database, smtp: Mailbox
) -> None:
    # Quiet hours from an hour ago to two hours ahead, every day: the email waits `scheduled`.
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    at = datetime.now(UTC)
    start, end = ((at + timedelta(hours=h)).strftime("%H:%M") for h in (-1, 2))
    quiet = {"enabled": True, "start": start, "end": end, "timezone": "UTC", "days": days}
    shop.put("/v1/recipients/u-1/preferences", json={"quiet_hours": quiet}).raise_for_status()
    held = send(shop, to=["u-1"], channels=["email"])
    planning.plan(rt, held)
    assert rows(db, held) == {("u-1", "email"): ("scheduled", "quiet_hours")}
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    future = send(shop, to=["u-2"], send_at=later)

    for nid in (held, future):
        assert shop.post(f"/v1/notifications/{nid}/cancel").status_code == 200
    assert rows(db, held)[("u-1", "email")] == ("suppressed", "cancelled")

    # Its time comes: nothing is planned, nothing released, nothing sent.
    scheduler.tick(rt, datetime.now(UTC) + timedelta(days=1))
    planning.plan(rt, future)
    assert rows(db, future) == {}
    assert rows(db, held)[("u-1", "email")] == ("suppressed", "cancelled")
    assert smtp.messages == []
    assert shop.get(f"/v1/notifications/{future}").json()["status"] == "cancelled"


def test_cancel_answers_404_for_no_such_notification_and_needs_send(
    shop: httpx.Client, server: Any, api_keys: dict[str, str]
) -> None:
    assert shop.post("/v1/notifications/999999/cancel").status_code == 404
    assert shop.post("/v1/notifications/x/cancel").status_code == 404
    nid = send(shop, to=["u-1"])
    with httpx.Client(base_url=server.url) as client:
        path = f"/v1/notifications/{nid}/cancel"
        reader = client.post(path, headers={"Authorization": f"Bearer {api_keys['read']}"})
        assert reader.status_code == 403
        sender = client.post(path, headers={"Authorization": f"Bearer {api_keys['send']}"})
        assert sender.status_code == 200 and sender.json()["status"] == "cancelled"
