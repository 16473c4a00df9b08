"""Nothing accepted is lost: a worker killed mid-broadcast, Redis flushed mid-broadcast,
Redis down when the API accepts, two schedulers at once, concurrent idempotent requests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, update
from sqlmodel import col, select

from engine.api.app import create_app
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification, Preference
from tests.conftest import BROKER_DB, COUNTERS_DB
from tests.engine.broadcasts import (
    BLAST,
    ORDER,
    assert_one_message_each,
    audience,
    ended,
    start_blast,
)
from tests.engine.conftest import Processes, send, settled, wait_for
from tests.support import Server, Sink


@pytest.mark.slow
def test_worker_killed_mid_broadcast_loses_nothing(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, _ = sink
    count = 10_000
    nid = start_blast(admin, processes, db, sink, count, first=1500)
    processes.kill("worker")  # SIGKILL, in the middle of sending
    partial = ended(db, nid)
    assert partial < count, "the broadcast finished before the crash; the test proves nothing"
    processes.worker("worker-2", threads=8)
    wait_for(lambda: ended(db, nid) == count, timeout=120, every=0.5)
    view = wait_for(lambda: settled(admin, nid), timeout=30)
    assert view["status"] == "done" and view["counts"]["delivered"] == count
    assert_one_message_each(receiver, count)


@pytest.mark.slow
@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_redis_flushed_mid_broadcast_loses_nothing(
    admin: httpx.Client, pipeline: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    count = 5_000
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, count)
    nid = send(admin, category="promo.blast", to={"all": True})
    wait_for(lambda: len(receiver.requests) >= 500, timeout=60, every=0.02)
    for number in (BROKER_DB, COUNTERS_DB):  # a restart without persistence
        with redis.Redis(db=number) as client:
            client.flushdb()
    assert ended(db, nid) < count
    wait_for(lambda: ended(db, nid) == count, timeout=120, every=0.5)
    assert_one_message_each(receiver, count)


def test_accepted_while_redis_is_down_is_sent_once_it_is_back(
    settings: Settings, db: Database, admin: httpx.Client, processes: Processes
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    cut_off = Server(create_app(down)).start()
    try:
        headers = {"Authorization": admin.headers["Authorization"]}
        with httpx.Client(base_url=cut_off.url, headers=headers, timeout=30) as client:
            accepted = client.post(
                "/v1/notifications", json={"category": "order.delivered", "to": ["u-1"]}
            )
            assert accepted.status_code == 202, accepted.text
            assert client.get("/readyz").status_code == 503
    finally:
        cut_off.stop()
    nid = accepted.json()["id"]
    with db.session() as session:
        row = session.get(Notification, int(nid))
        assert row is not None and row.enqueued_at is None  # in SQL, not on any queue
    processes.worker()
    processes.scheduler()
    view = wait_for(lambda: settled(admin, nid))
    assert view["counts"]["delivered"] == 1


@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_schedulers_release_deferred_work_once(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    count = 300
    admin.put("/v1/categories/promo.hook", json={**BLAST, "priority": "high"}).raise_for_status()
    audience(db, url, count)
    with db.session() as session:  # everyone is in quiet hours right now
        zone_now = datetime.now(UTC)
        quiet = {
            "enabled": True,
            "timezone": "UTC",
            "start": (zone_now - timedelta(hours=1)).strftime("%H:%M"),
            "end": (zone_now + timedelta(hours=2)).strftime("%H:%M"),
        }
        session.add_all(
            Preference(recipient_id=f"r{i:05d}", quiet_hours=quiet) for i in range(count)
        )
    processes.worker(threads=8)
    nid = send(admin, category="promo.hook", to={"all": True})
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    assert view["counts"]["scheduled"] == count and receiver.requests == []
    with db.session() as session:  # the window ends
        session.execute(update(Preference).values(quiet_hours={"enabled": False}))
        session.execute(
            update(Delivery)
            .where(col(Delivery.notification_id) == int(nid))
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    processes.scheduler("scheduler-a")
    processes.scheduler("scheduler-b")
    wait_for(lambda: ended(db, nid) == count, timeout=60, every=0.2)
    assert len(receiver.requests) == count
    assert_one_message_each(receiver, count)


def test_concurrent_requests_with_one_idempotency_key_create_one_notification(
    admin: httpx.Client, db: Database
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    body: dict[str, Any] = {"category": "order.delivered", "to": ["u-1"], "data": {"order": "456"}}
    headers = {"Idempotency-Key": "order-456-delivered"}
    answers: list[httpx.Response] = []

    def post() -> None:
        answers.append(admin.post("/v1/notifications", json=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Notification)).one() == 1

    again = admin.post("/v1/notifications", json=body, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == answers[0].json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    different = admin.post(
        "/v1/notifications", json={**body, "data": {"order": "457"}}, headers=headers
    )
    assert different.status_code == 422
    assert different.json()["error"]["field"] == "idempotency_key"
