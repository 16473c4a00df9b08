"""An idle scheduler looks at SQL every few seconds instead of every second, and still
releases held work on time: after a look that handed nothing over it sleeps until the
earliest due time in SQL, never longer than `scheduler_idle_interval`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from engine.pipeline import scheduler
from engine.settings import Settings
from engine.store.db import Database
from engine.store.redis_keys import RedisKeys
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from tests.conftest import REDIS_PORT
from tests.engine.conftest import Processes, recipient, send, settled, wait_for

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
NOTE = {
    "name": "Reminder",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Reminder", "body": "now"}}},
}
IDLE = 30.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A scheduler that, with nothing due, would sleep half a minute."""
    return settings.model_copy(update={"scheduler_idle_interval": IDLE})


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@BOTH
def test_an_idle_look_sleeps_until_the_earliest_due_time(
    admin: httpx.Client, rt: Runtime, settings: Settings
) -> None:
    admin.put("/v1/categories/note.reminder", json=NOTE).raise_for_status()
    recipient(admin, "u-1")
    at = datetime.now(UTC)
    # Nothing held: the longest sleep. Work handed over: the shortest.
    assert scheduler.pause_after(rt, False, at) == IDLE
    assert scheduler.pause_after(rt, True, at) == settings.scheduler_interval
    # A notification for later: wake when it falls due, not half a minute on.
    send(admin, category="note.reminder", to=["u-1"], send_at=later(12))
    assert 10 < scheduler.pause_after(rt, False, datetime.now(UTC)) <= 12
    # A look after its time that did not hand it over (it failed): look again as soon
    # as a busy scheduler would.
    after = datetime.now(UTC) + timedelta(seconds=13)
    assert scheduler.pause_after(rt, False, after) == settings.scheduler_interval


def test_held_work_is_released_on_time_by_an_idle_scheduler(
    admin: httpx.Client, processes: Processes, settings: Settings
) -> None:
    counters = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=settings.counters_redis_db)
    admin.put("/v1/categories/note.reminder", json=NOTE).raise_for_status()
    recipient(admin, "u-1")
    processes.worker(threads=2)
    nid = send(admin, category="note.reminder", to=["u-1"], send_at=later(4))
    processes.scheduler()  # its first look finds the notification 4 s ahead
    started = time.monotonic()
    view = wait_for(lambda: settled(admin, nid), timeout=IDLE)
    took = time.monotonic() - started
    assert [d["status"] for d in view["deliveries"]] == ["delivered"]
    assert took < IDLE / 2, f"released after {took:.1f} s: the scheduler slept past the due time"
    # Nothing else is held: the scheduler's looks (the time of the last one is what
    # `tidings status` shows) now come half a minute apart, not every 0.2 s.
    ran = RedisKeys.from_settings(settings).scheduler_ran
    looks = set()
    for _ in range(8):
        looks.add(counters.get(ran))
        time.sleep(0.5)
    assert len(looks) <= 2, f"{len(looks)} looks in 4 s of idleness"
