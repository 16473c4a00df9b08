"""Idle workers wait in Redis for work instead of polling it, and still take work at once:
a critical notification sent to an idle worker is delivered, a retry falls due on time,
and a worker told to stop while idle stops."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import dramatiq
import httpx
import pytest
import redis

from engine.settings import Settings
from engine.store.redis_keys import RedisKeys
from engine.worker.waking import WakingRedisBroker
from tests.conftest import BROKER_DB, REDIS_PORT
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Sink

ORDER = {
    "name": "Order delivered",
    "kind": "transactional",
    "priority": "critical",
    "channels": ["inapp", "webhook"],
    "templates": {
        "inapp": {"en": {"title": "Order {{ data.order }}", "body": "delivered"}},
        "webhook": {"en": {"title": "Order {{ data.order }}", "body": "delivered"}},
    },
}
# Consumers of the three queues and of their three delay queues.
CONSUMERS = 6


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Workers that never look at their queues unprompted while this test runs: only a
    wake-up can bring them work."""
    return settings.model_copy(
        update={"worker_timeout_ms": 600_000, "broker_heartbeat_timeout": 3600}
    )


def blocked(client: redis.Redis) -> int:
    """Clients of this test's Redis database blocked in a command such as BLPOP (others
    may share the server)."""
    db = str(client.connection_pool.connection_kwargs.get("db", 0))
    return sum(1 for c in client.client_list() if c["db"] == db and "b" in c["flags"])


@pytest.fixture
def idle_worker(processes: Processes, redis_client: redis.Redis) -> Iterator[Processes]:
    processes.worker(threads=2)
    wait_for(lambda: blocked(redis_client) >= CONSUMERS)
    yield processes


def test_an_idle_worker_waits_blocked_in_redis_and_delivers_a_critical_notification(
    admin: httpx.Client, idle_worker: Processes, redis_client: redis.Redis, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1", webhook_url=f"{url}/hooks/u-1")
    before = redis_client.info("stats")["total_commands_processed"]

    nid = send(admin, category="order.delivered", to=["u-1"], data={"order": "42"})

    view = wait_for(lambda: settled(admin, nid))
    assert {d["channel"]: d["status"] for d in view["deliveries"]} == {
        "inapp": "delivered",
        "webhook": "delivered",
    }
    assert receiver.by_path()["/hooks/u-1"]
    # Back to waiting: every consumer blocks again instead of polling.
    wait_for(lambda: blocked(redis_client) >= CONSUMERS)
    assert redis_client.info("stats")["total_commands_processed"] > before


def test_a_retry_falls_due_while_its_worker_is_idle(
    admin: httpx.Client,
    idle_worker: Processes,
    redis_client: redis.Redis,
    sink: tuple[Sink, str],
    settings: Settings,
) -> None:
    # The receiver fails; each retry is a delayed message the idle worker holds until its
    # time comes, then runs, until the attempts run out.
    _, url = sink
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-2", webhook_url=f"{url}/fail/u-2")

    nid = send(admin, category="order.delivered", to=["u-2"], data={"order": "43"})

    view = wait_for(lambda: settled(admin, nid))
    (hook,) = [d for d in view["deliveries"] if d["channel"] == "webhook"]
    assert hook["status"] == "failed"
    assert hook["attempts"] == settings.delivery_max_attempts


def test_an_idle_worker_stops_when_told(idle_worker: Processes) -> None:
    process = idle_worker.running["worker"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert "Worker has been shut down" in idle_worker.log("worker")


def test_a_dead_workers_prefetched_job_comes_back_to_an_idle_worker(
    redis_client: redis.Redis,
) -> None:
    # One worker fetched a job and died before acknowledging it. An idle worker fetches
    # a handful of times a second at most, so Dramatiq's one-in-a-thousand chance of
    # maintenance per command would leave the job stranded; it must come back once the
    # dead worker's heartbeat is older than the timeout.
    def broker() -> WakingRedisBroker:
        return WakingRedisBroker(
            url=f"redis://127.0.0.1:{REDIS_PORT}/{BROKER_DB}",
            keys=RedisKeys("waking-test"),
            idle_timeout_ms=100,
            heartbeat_timeout=600,
            middleware=[],
        )

    dead, alive = broker(), broker()
    try:
        dead.declare_queue("normal")
        alive.declare_queue("normal")
        sent = dead.enqueue(dramatiq.Message("normal", "deliver", (), {}, {}))
        fetching = dead.consume("normal")
        taken = next(m for m in fetching if m is not None)
        assert taken.message_id == sent.message_id

        consumer = alive.consume("normal")
        deadline = time.monotonic() + 3  # 0.6 s to be dead, then a few idle fetches
        back = None
        while back is None and time.monotonic() < deadline:
            back = next(consumer)
        assert back is not None, "the dead worker's job never came back"
        assert back.message_id == sent.message_id
        consumer.close()
    finally:
        dead.close()
        alive.close()
