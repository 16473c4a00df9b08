"""A cancel racing real workers mid-broadcast: after the cancel answered, not one more
webhook reaches the receiver, and every delivery ended sent (exactly those the receiver
got) or `suppressed/cancelled`; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import col, select

from engine.catalog import recipients
from engine.schemas.catalog import RecipientIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, PlanChunk, Preference
from tests.engine.conftest import Processes, send, wait_for
from tests.support import Sink

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
COUNT = 240
SALE: dict[str, Any] = {
    "name": "Flash sale",
    "kind": "promotional",
    "priority": "high",
    "channels": ["webhook"],
    "templates": {"webhook": {"en": {"title": "Sale for {{ recipient.id }}", "body": "today"}}},
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Slices of 40 recipients and deliver jobs of 10: when the cancel lands, some of the
    audience is unplanned, some deliveries wait in the broker and some are being sent."""
    return settings.model_copy(
        update={"plan_chunk_size": 40, "plan_ahead": 1, "deliver_chunk_size": 10}
    )


def audience(db: Database, url: str) -> None:
    ids = [f"r{i:04d}" for i in range(COUNT)]
    with db.session() as session:
        recipients.upsert_many(
            session, [(i, RecipientIn(webhook_url=f"{url}/hook/{i}")) for i in ids]
        )
    with db.session() as session:
        session.add_all(Preference(recipient_id=i, quiet_hours={"enabled": False}) for i in ids)


@pytest.fixture
def slow_pipeline(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> Sink:
    """The sale category, its audience, two workers and a scheduler, and a receiver that
    takes 0.3 s a webhook, so a cancel lands mid-send."""
    receiver, url = sink
    receiver.delay = 0.3
    admin.put("/v1/categories/promo.sale", json=SALE).raise_for_status()
    audience(db, url)
    processes.worker("worker-1", threads=4)
    processes.worker("worker-2", threads=4)
    processes.scheduler()
    return receiver


def answered_mid_send(receiver: Sink) -> int:
    """Requests the receiver had begun when a cancel answered; the cancel waits for sends
    under way, so every one of them was already answered."""
    with receiver.lock:
        received, answered = len(receiver.arrivals), receiver.answered
    assert received < COUNT, "the broadcast finished before the cancel"
    assert answered == received
    return received


def sent_or_cancelled(db: Database, receiver: Sink, notification_ids: tuple[int, ...]) -> set[str]:
    """Every delivery ended delivered or suppressed/cancelled, and the receiver got exactly
    the delivered ones: their paths."""
    with db.session() as session:
        rows = session.exec(
            select(Delivery).where(col(Delivery.notification_id).in_(notification_ids))
        ).all()
    outcomes = {(d.status, d.reason) for d in rows}
    assert outcomes <= {("delivered", None), ("suppressed", "cancelled")}, outcomes
    delivered = {f"/hook/{d.recipient_id}" for d in rows if d.status == "delivered"}
    with receiver.lock:
        reached = {path for path, _, _ in receiver.requests if path.startswith("/hook/")}
    assert reached == delivered and 0 < len(delivered) < COUNT
    return delivered


def settled(db: Database, nid: int) -> bool:
    """Nothing of the notification is waiting, queued, being sent or being planned."""
    with db.session() as session:
        busy = session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.notification_id) == nid,
                col(Delivery.status).in_(("scheduled", "queued", "sending")),
            )
        ).one()
        planning = session.exec(
            select(func.count())
            .select_from(PlanChunk)
            .where(
                col(PlanChunk.notification_id) == nid,
                col(PlanChunk.status).in_(("pending", "planning")),
            )
        ).one()
    return busy == 0 and planning == 0


@BOTH
def test_nothing_is_sent_after_the_cancel_answered(
    admin: httpx.Client, db: Database, slow_pipeline: Sink
) -> None:
    receiver = slow_pipeline
    nid = int(send(admin, category="promo.sale", to={"all": True}))
    wait_for(lambda: len(receiver.seconds()) >= 20, timeout=60, every=0.01)

    answer = admin.post(f"/v1/notifications/{nid}/cancel")
    assert answer.status_code == 200, answer.text
    received_at_answer = answered_mid_send(receiver)

    wait_for(lambda: settled(db, nid), timeout=60, every=0.2)
    # Give every job already in the broker its chance: a cancelled slice or delivery
    # found by a late job must still send nothing.
    admin.post(f"/v1/notifications/{nid}/cancel").raise_for_status()
    assert len(receiver.seconds()) == received_at_answer

    delivered = sent_or_cancelled(db, receiver, (nid,))
    stopped = answer.json()
    assert stopped["cancelled"] + stopped["chunks_cancelled"] > 0, stopped
    view = admin.get(f"/v1/notifications/{nid}").json()
    assert view["status"] == "cancelled"
    assert view["counts"]["delivered"] == len(delivered)


@BOTH
def test_nothing_of_a_campaign_is_sent_after_its_cancel_answered(
    admin: httpx.Client, db: Database, slow_pipeline: Sink
) -> None:
    receiver = slow_pipeline
    event = datetime.now(UTC) + timedelta(seconds=60)
    created = admin.post(
        "/v1/campaigns",
        json={
            "category": "promo.sale",
            "to": {"all": True},
            "event_at": event.isoformat(),
            "steps": ["-55s", "-5s"],
        },
    )
    assert created.status_code == 202, created.text
    campaign = created.json()
    first, second = (int(s["notification_id"]) for s in campaign["steps"])
    wait_for(lambda: len(receiver.seconds()) >= 20, timeout=60, every=0.01)

    answer = admin.post(f"/v1/campaigns/{campaign['id']}/cancel")
    assert answer.status_code == 200, answer.text
    received_at_answer = answered_mid_send(receiver)

    wait_for(lambda: settled(db, first) and settled(db, second), timeout=60, every=0.2)
    admin.post(f"/v1/campaigns/{campaign['id']}/cancel").raise_for_status()
    assert len(receiver.seconds()) == received_at_answer
    delivered = sent_or_cancelled(db, receiver, (first, second))
    shown = admin.get(f"/v1/campaigns/{campaign['id']}").json()
    assert shown["status"] == "cancelled"
    assert shown["steps"][0]["counts"]["delivered"] == len(delivered)
