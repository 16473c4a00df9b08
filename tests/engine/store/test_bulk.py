"""Bulk writes store each row's own values, however many rows share one; the first events
of deliveries just written are theirs, and reach an endpoint that asked for them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select

from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent, EventEndpoint, EventOutbox, Recipient
from engine.timeutil import aware, now

BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)

TAGS = st.lists(st.sampled_from(["vip", "game.mobile", "1", "true", "é"]), max_size=3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tags=st.lists(st.one_of(st.none(), TAGS), min_size=1, max_size=40))
def test_upserted_rows_read_back_with_their_own_tags(db: Database, tags: list[Any]) -> None:
    # Many rows share a list: each is converted once, and each row keeps its own.
    prefix = uuid.uuid4().hex[:8]
    stamp = now()
    rows = [
        {
            "id": f"{prefix}-{i}",
            "tags": value,
            "annual_spend": 0,
            "links_version": 0,
            "links_salt": "0" * 16,
            "created_at": stamp,
            "updated_at": stamp,
        }
        for i, value in enumerate(tags)
    ]
    with db.session() as session:
        bulk.upsert(session, Recipient, rows, update=("tags", "updated_at"))
    with db.session() as session:
        stored = dict(
            session.exec(
                select(Recipient.id, Recipient.tags).where(col(Recipient.id).startswith(prefix))
            ).all()
        )
    assert stored == {row["id"]: row["tags"] for row in rows}


def _deliveries(session: Session, recipients: list[str], status: str, at: datetime) -> list[Any]:
    rows = [
        {
            "notification_id": 1,
            "recipient_id": rid,
            "channel": "inapp",
            "category": "promo.sale",
            "status": status,
            "reason": "capped" if status == "suppressed" else None,
            "attempts": 0,
            "created_at": at,
            "updated_at": at,
        }
        for rid in recipients
    ]
    return list(
        bulk.insert_ignore(
            session,
            Delivery,
            rows,
            conflict=("notification_id", "recipient_id", "channel"),
            returning=("id", "status", "reason"),
        )
    )


@BOTH
def test_first_events_are_those_of_the_deliveries_just_written(db: Database) -> None:
    first, second = now(), now() + timedelta(seconds=1)
    with db.session() as session:  # an earlier run wrote two, with their events
        earlier = _deliveries(session, ["u-1", "u-2"], "delivered", first)
        bulk.add_first_events(session, [tuple(row) for row in earlier], first)
    with db.session() as session:  # a replay: only u-3 and u-4 are new
        written = _deliveries(session, ["u-1", "u-2", "u-3", "u-4"], "suppressed", second)
        bulk.add_first_events(session, [tuple(row) for row in written], second)
    with db.session() as session:
        events = session.exec(
            select(
                DeliveryEvent.delivery_id,
                DeliveryEvent.status,
                DeliveryEvent.reason,
                DeliveryEvent.at,
            ).order_by(col(DeliveryEvent.delivery_id))
        ).all()
        outbox = session.exec(select(EventOutbox)).all()
    assert [(i, s, r, aware(a)) for i, s, r, a in events] == [
        (earlier[0].id, "delivered", None, first),
        (earlier[1].id, "delivered", None, first),
        (written[0].id, "suppressed", "capped", second),
        (written[1].id, "suppressed", "capped", second),
    ]
    assert outbox == []  # no endpoint asked for them


@BOTH
def test_first_events_reach_an_endpoint_that_asked_for_them(db: Database) -> None:
    at = now()
    with db.session() as session:
        session.add(
            EventEndpoint(url="https://example.com/e", types=["delivery.suppressed"], secret="s")
        )
    with db.session() as session:
        written = _deliveries(session, ["u-1", "u-2"], "suppressed", at)
        bulk.add_first_events(session, [tuple(row) for row in written], at)
    with db.session() as session:
        told = session.exec(
            select(EventOutbox.type, EventOutbox.delivery_id, EventOutbox.reason)
        ).all()
        stored = session.exec(select(DeliveryEvent.delivery_id, DeliveryEvent.status)).all()
    assert sorted(told) == sorted(("delivery.suppressed", row.id, "capped") for row in written)
    assert sorted(stored) == sorted((row.id, "suppressed") for row in written)
