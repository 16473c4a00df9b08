"""One drain of delivery events against a real receiver: a backlog of many batches goes
out over a few kept-alive connections, several requests at a time, each event once and
exactly as the outbox told it, signed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, insert
from sqlmodel import select
from standardwebhooks import Webhook

from engine.ops import event_endpoints
from engine.pipeline import events
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, EventBatch, EventOutbox, Notification
from engine.timeutil import now
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from tests.support import Server

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
EVENTS = 12_000  # 120 batches: more than one round of posts


class Receiver:
    """Verifies each request's signature and notes the connection it came on and how
    many requests were in flight at once; answers after a short think."""

    def __init__(self) -> None:
        self.secret = ""
        self.lock = threading.Lock()
        self.connections: set[Any] = set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.requests = 0
        self.events: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/events", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        document = Webhook(self.secret).verify(raw, dict(request.headers))
        peer = request.transport.get_extra_info("peername") if request.transport else None
        with self.lock:
            self.connections.add(peer)
            self.requests += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.02)
        with self.lock:
            self.in_flight -= 1
            self.events += document["data"]["events"]
        return web.Response(status=204)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    endpoint = Receiver()
    server = Server(endpoint.app).start()
    yield endpoint, f"{server.url}/events"
    server.stop()


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


def backlog(db: Database, url: str, count: int) -> str:
    """An endpoint and `count` delivery events waiting in the outbox; its secret."""
    at = now()
    with db.session() as session:
        secret = event_endpoints.create(session, url=url, types=None, description=None).secret
        session.add(Notification(id=7, category="promo.sale", audience={"all": True}))
        session.flush()
        session.execute(
            insert(Delivery),
            [
                {
                    "notification_id": 7,
                    "recipient_id": f"u-{n}",
                    "channel": "inapp",
                    "category": "promo.sale",
                    "status": "delivered",
                    "created_at": at,
                    "updated_at": at,
                }
                for n in range(count // 2)
            ],
        )
        first = session.exec(select(func.min(Delivery.id))).one()
        session.execute(
            insert(EventOutbox),
            [
                {
                    "type": "delivery.delivered" if n % 2 else "delivery.sent",
                    "delivery_id": first + n // 2,
                    "at": at,
                }
                for n in range(count)
            ],
        )
    return secret


@BOTH
def test_one_drain_posts_a_backlog_over_kept_alive_connections_several_at_a_time(
    rt: Runtime, db: Database, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    endpoint.secret = backlog(db, url, EVENTS)

    assert events.drain(rt, budget=120) is False  # all of it, in one job

    assert endpoint.requests == EVENTS // events.BATCH_EVENTS
    ids = [e["id"] for e in endpoint.events]
    assert len(ids) == len(set(ids)) == EVENTS
    # Kept alive: the rounds of posts share connections instead of opening new ones.
    assert len(endpoint.connections) <= events.PER_ENDPOINT
    assert 1 < endpoint.most_in_flight <= events.PER_ENDPOINT
    first = min(endpoint.events, key=lambda e: int(e["id"].removeprefix("evt_")))
    assert first["type"] == "delivery.sent"
    assert first["data"]["recipient"] == "u-0" and first["data"]["channel"] == "inapp"
    assert first["data"]["notification_id"] == "7" and first["data"]["status"] == "sent"
    with db.session() as session:
        sent = session.exec(select(EventBatch.status, func.count()).group_by(EventBatch.status))
        assert dict(sent.all()) == {"sent": EVENTS // events.BATCH_EVENTS}
        assert session.exec(select(func.count()).select_from(EventOutbox)).one() == 0
