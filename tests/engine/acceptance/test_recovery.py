"""Recovery in seconds, with the default stall timer (5 minutes) left as the last resort:
a worker killed mid-broadcast, a Redis flushed or stopped mid-broadcast. Each ends with
every recipient reached, no recipient given two different messages, within 60 s."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from sqlmodel import col, select

from engine.api.app import create_app
from engine.pipeline import delivery, planning, scheduler
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification
from engine.store.redis_keys import RedisKeys
from engine.worker import runtime
from engine.worker.broker import make_broker
from tests.conftest import BROKER_DB, COUNTERS_DB, REDIS_PORT
from tests.engine.broadcasts import (
    BLAST,
    assert_one_message_each,
    audience,
    ended,
    resends,
    start_blast,
)
from tests.engine.conftest import Processes, send, settled, wait_for
from tests.services import OwnRedis
from tests.support import Server, Sink

RECOVERY = 60  # seconds, with default settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The pipeline's test settings with the production recovery defaults."""
    defaults = Settings()
    return settings.model_copy(
        update={
            name: getattr(defaults, name)
            for name in ("stall_after", "delivery_max_attempts", "retry_backoff_base")
        }
    )


@pytest.mark.slow
def test_a_killed_worker_is_recovered_in_seconds(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, _ = sink
    count = 3_000
    nid = start_blast(admin, processes, db, sink, count, first=300)
    processes.kill("worker")  # SIGKILL, in the middle of sending
    killed = time.monotonic()
    assert ended(db, nid) < count, "the broadcast finished before the crash"
    processes.worker("worker-2", threads=8)  # what a supervisor does
    wait_for(lambda: ended(db, nid) == count, timeout=RECOVERY + 30, every=0.5)
    took = time.monotonic() - killed
    assert took < RECOVERY, f"recovered after {took:.0f}s"
    assert_one_message_each(receiver, count)
    assert resends(receiver) <= 2 * 500  # at most what the dead worker had in hand
    assert "took back the claims of stopped workers" in processes.log("scheduler")


@pytest.mark.slow
def test_a_flushed_redis_is_noticed_and_what_was_in_flight_requeued(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    count = 3_000
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, count)
    # Small jobs, so that most of the broadcast waits in Redis rather than in the worker's
    # prefetched messages when Redis loses it.
    processes.settings = processes.settings.model_copy(update={"deliver_chunk_size": 25})
    pipeline = processes
    pipeline.worker()
    pipeline.scheduler()
    nid = send(admin, category="promo.blast", to={"all": True})
    wait_for(lambda: len(receiver.requests) >= 300, timeout=60, every=0.02)
    for number in (BROKER_DB, COUNTERS_DB):  # a restart without persistence
        with redis.Redis(port=REDIS_PORT, db=number) as client:
            client.flushdb()
    flushed = time.monotonic()
    assert ended(db, nid) < count
    wait_for(lambda: ended(db, nid) == count, timeout=RECOVERY + 30, every=0.5)
    took = time.monotonic() - flushed
    assert took < RECOVERY, f"recovered after {took:.0f}s"
    assert_one_message_each(receiver, count)
    assert resends(receiver) == 0  # every outcome was known: nothing was sent twice
    # the flush lost queued jobs, and the scheduler handed them over again at once
    assert re.search(r'in flight", "deliveries": [1-9]', pipeline.log("scheduler"))


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis().start()
    yield server
    server.stop()


@pytest.mark.slow
def test_a_redis_stopped_and_started_empty_loses_nothing_sent_meanwhile(
    settings: Settings,
    db: Database,
    admin: httpx.Client,
    own_redis: OwnRedis,
    sink: tuple[Sink, str],
    tmp_path: Path,
) -> None:
    receiver, url = sink
    count = 1_000
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, count)
    mine = settings.model_copy(update={"redis_url": own_redis.url, "counters_redis_db": 1})
    processes = Processes(mine, tmp_path)
    api = Server(create_app(mine)).start()
    headers = {"Authorization": admin.headers["Authorization"]}
    try:
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            processes.worker(threads=4)
            processes.scheduler()
            first = send(client, category="promo.blast", to={"all": True})
            wait_for(lambda: len(receiver.requests) >= 100, timeout=60, every=0.02)
            own_redis.stop()
            late = {**BLAST, "templates": {"webhook": {"en": {"title": "Late", "body": "x"}}}}
            client.put("/v1/categories/promo.late", json=late).raise_for_status()
            during = send(client, category="promo.late", to=["r00001", "r00002"])
            time.sleep(10)
            own_redis.start()  # empty
            started = time.monotonic()
            wait_for(lambda: ended(db, first) == count, timeout=RECOVERY + 30, every=0.5)
            wait_for(lambda: settled(client, during), timeout=RECOVERY)
            took = time.monotonic() - started
    finally:
        processes.stop_all()
        api.stop()
    assert took < RECOVERY, f"recovered after {took:.0f}s"
    broadcast = Sink()
    broadcast.requests = [r for r in receiver.requests if r[2]["title"] != "Late"]
    assert_one_message_each(broadcast, count)
    assert sorted(path for path, _, body in receiver.requests if body["title"] == "Late") == [
        "/hook/r00001",
        "/hook/r00002",
    ]


def test_the_enqueued_mark_is_undone_when_the_dispatch_fails(
    settings: Settings, db: Database, admin: httpx.Client
) -> None:
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    cut_off = Server(create_app(down)).start()
    try:
        headers = {"Authorization": admin.headers["Authorization"]}
        with httpx.Client(base_url=cut_off.url, headers=headers, timeout=30) as client:
            nid = send(client, category="promo.blast", to=["u-1"])
    finally:
        cut_off.stop()
    rt = runtime.Runtime(down, make_broker(down))
    try:
        with pytest.raises(redis.ConnectionError):
            scheduler.release_notifications(rt, scheduler.now() + scheduler.timedelta(minutes=1))
    finally:
        rt.close()
    with db.session() as session:
        row = session.exec(select(Notification).where(col(Notification.id) == int(nid))).one()
        assert row.enqueued_at is None  # due again at once, not after the stall timer


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[runtime.Runtime]:
    """A worker's runtime on the test database and Redis (no worker runs the jobs)."""
    rt = runtime.Runtime(settings, make_broker(settings))
    yield rt
    rt.close()


@pytest.mark.parametrize("holder_alive", [False, True])
def test_a_redelivered_job_takes_back_only_a_dead_workers_expired_lease(
    admin: httpx.Client,
    db: Database,
    rt: runtime.Runtime,
    sink: tuple[Sink, str],
    holder_alive: bool,
) -> None:
    receiver, url = sink
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    admin.put("/v1/recipients/u-1", json={"webhook_url": f"{url}/hook/u-1"}).raise_for_status()
    nid = int(send(admin, category="promo.blast", to=["u-1"]))
    planning.plan(rt, nid)
    holder = "elsewhere:4242:0123abcd"  # another worker process claimed it, then ran out
    with db.session() as session:
        (row,) = session.exec(select(Delivery).where(col(Delivery.notification_id) == nid))
        assert row.id is not None and row.status == "queued"
        row.status, row.claimed_by = "sending", holder
        row.lease_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
    if holder_alive:  # its liveness key is still renewed: its job is running, slowly
        rt.judge.client.set(RedisKeys.from_settings(rt.settings).alive(holder), b"1", ex=30)
    delivery.deliver(rt, [row.id])  # the message comes again (Dramatiq redelivered it)
    with db.session() as session:
        after = session.get(Delivery, row.id)
        assert after is not None
    if holder_alive:
        assert after.status == "sending" and receiver.requests == []
    else:
        assert after.status == "delivered" and after.claimed_by == rt.liveness.id
        assert after.attempts == 2  # the dead worker's try counts
        assert [path for path, _, _ in receiver.requests] == ["/hook/u-1"]
