"""Accepting a notification, the use case the API and `tidings send` share: stored, its
plan job on the broker, noted as enqueued; on SQLite and PostgreSQL, with Dramatiq's
StubBroker standing in for the queues."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq import Message
from dramatiq.brokers.stub import StubBroker
from sqlmodel import col, select

from engine.catalog import categories, recipients
from engine.errors import IdempotencyMismatch, UnknownRecipients
from engine.pipeline import accept
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.notifications import NotificationIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Notification
from engine.worker.broker import PLAN, QUEUES, Dispatcher, actor_name

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


@pytest.fixture
def broker() -> StubBroker:
    stub = StubBroker()
    for queue in QUEUES:
        stub.declare_queue(queue)
    return stub


@pytest.fixture
def orders(db: Database) -> None:
    with db.session() as session:
        categories.upsert(
            session,
            "order.shipped",
            CategoryIn(
                name="Shipped",
                kind="transactional",
                priority="high",
                channels=["inapp"],
                templates={"inapp": {"en": {"title": "Shipped", "body": "on its way"}}},
            ),
        )
        for rid in ("u-1", "u-2"):
            recipients.upsert(session, rid, RecipientIn())


def planned(broker: StubBroker) -> list[tuple[str, int]]:
    """(queue, notification id) of every plan job on the broker."""
    messages = [
        (queue, Message.decode(raw)) for queue in QUEUES for raw in broker.queues[queue].queue
    ]
    return [
        (queue, message.args[0])
        for queue, message in messages
        if message.actor_name == actor_name(PLAN, queue)
    ]


def enqueued_at(db: Database, notification_id: int) -> datetime | None:
    with db.session() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        return row.enqueued_at


class Unreachable:
    """A broker that does not answer."""

    def plan(self, notification_id: int, queue: str) -> None:
        raise ConnectionError("the broker is not answering")


@BOTH
def test_a_due_notification_is_stored_planned_and_noted_as_enqueued(
    db: Database, settings: Settings, broker: StubBroker, orders: None
) -> None:
    spec = NotificationIn(category="order.shipped", to=["u-1", "u-2"])
    (accepted,) = accept.submit(db, [spec], settings=settings, planner=Dispatcher(broker))
    assert accepted.recipients == 2
    assert planned(broker) == [("critical", accepted.id)]
    assert enqueued_at(db, accepted.id) is not None


@BOTH
def test_a_repeated_key_answers_the_first_notification_and_plans_nothing_more(
    db: Database, settings: Settings, broker: StubBroker, orders: None
) -> None:
    spec = NotificationIn(category="order.shipped", to=["u-1"], idempotency_key="k-1")
    dispatcher = Dispatcher(broker)
    (first,) = accept.submit(db, [spec], settings=settings, planner=dispatcher)
    (again,) = accept.submit(db, [spec], settings=settings, planner=dispatcher)
    assert (again.id, again.replayed) == (first.id, True)
    assert planned(broker) == [("critical", first.id)]
    other = spec.model_copy(update={"to": ["u-2"]})
    with pytest.raises(IdempotencyMismatch) as refused:
        accept.submit(db, [other], settings=settings, planner=dispatcher)
    assert refused.value.field == "idempotency_key"


@BOTH
def test_a_refused_batch_stores_and_plans_nothing(
    db: Database, settings: Settings, broker: StubBroker, orders: None
) -> None:
    specs = [
        NotificationIn(category="order.shipped", to=["u-1"]),
        NotificationIn(category="order.shipped", to=["u-1", "nobody"]),
    ]
    with pytest.raises(UnknownRecipients) as refused:
        accept.submit(db, specs, settings=settings, planner=Dispatcher(broker), batch=True)
    assert refused.value.field == "notifications.1.to"
    assert refused.value.unknown == ["nobody"]
    assert planned(broker) == []
    with db.session() as session:
        assert session.exec(select(Notification)).all() == []


def test_a_scheduled_notification_waits_for_the_scheduler(
    db: Database, settings: Settings, broker: StubBroker, orders: None
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    spec = NotificationIn(category="order.shipped", to=["u-1"], send_at=later)
    (accepted,) = accept.submit(db, [spec], settings=settings, planner=Dispatcher(broker))
    assert planned(broker) == []
    assert enqueued_at(db, accepted.id) is None


def test_with_the_broker_down_it_stays_accepted_for_the_scheduler(
    db: Database, settings: Settings, orders: None
) -> None:
    spec = NotificationIn(category="order.shipped", to=["u-1"])
    (accepted,) = accept.submit(db, [spec], settings=settings, planner=Unreachable())
    with db.session() as session:
        waiting = session.exec(
            select(Notification.id).where(col(Notification.enqueued_at).is_(None))
        ).all()
    assert waiting == [accepted.id]


def test_noting_it_enqueued_runs_when_the_caller_says(
    db: Database, settings: Settings, broker: StubBroker, orders: None
) -> None:
    held: list[Callable[[], None]] = []
    spec = NotificationIn(category="order.shipped", to=["u-1"])
    (accepted,) = accept.submit(
        db, [spec], settings=settings, planner=Dispatcher(broker), later=held.append
    )
    assert planned(broker) == [("critical", accepted.id)]
    assert enqueued_at(db, accepted.id) is None
    (note,) = held
    note()
    assert enqueued_at(db, accepted.id) is not None
