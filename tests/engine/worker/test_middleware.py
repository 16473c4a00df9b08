"""Jobs of the normal and bulk queues give way to critical ones on SQLite: run by a real
Dramatiq worker (on the stub broker, with Tidings' middleware) against a real SQLite file,
a critical job waiting for the write turn goes before a bulk job that waited longer."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from engine.store.db import background
from engine.store.sqlite import Connection
from engine.worker.broker import QUEUES, middleware_stack
from tests.engine.conftest import wait_for


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(path), timeout=30, check_same_thread=False, factory=Connection)


def rows(path: Path) -> list[str]:
    with connect(path) as connection:
        return [who for (who,) in connection.execute("SELECT who FROM t ORDER BY k")]


def taken(path: Path, lock: str) -> bool:
    """Whether some writer holds one of the lock files beside the database: `background`
    while a background writer is in line for the turn, `waiting` while a foreground
    writer waits for it."""
    fd = os.open(f"{path}-{lock}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing it releases the probe's own lock
    return False


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "tidings.db"
    with connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, who TEXT)")
    return path


@pytest.fixture
def broker(path: Path) -> Iterator[StubBroker]:
    """A broker with Tidings' middleware and, per queue, a job that writes one row."""
    broker = StubBroker(middleware=middleware_stack())
    broker.emit_after("process_boot")
    for queue in QUEUES:
        broker.declare_queue(queue)

        def write(who: str, fail: bool = False) -> None:
            connection = connect(path)
            try:
                connection.execute("INSERT INTO t (who) VALUES (?)", (who,))
                if fail:
                    raise RuntimeError("the job fails after its write")
                connection.commit()
            finally:
                connection.close()

        dramatiq.actor(write, broker=broker, actor_name=f"write.{queue}", queue_name=queue)
    yield broker
    broker.close()


def send(broker: StubBroker, queue: str, who: str, *, fail: bool = False) -> None:
    broker.get_actor(f"write.{queue}").send_with_options(args=(who, fail), max_retries=0)


@pytest.fixture
def holder(path: Path) -> Iterator[sqlite3.Connection]:
    """A foreground writer (an API request) in the middle of its transaction."""
    connection = connect(path)
    yield connection
    connection.close()


def run_worker(broker: StubBroker, threads: int) -> dramatiq.Worker:
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=20)
    worker.start()
    return worker


@pytest.mark.parametrize("queue", ["normal", "bulk"])
def test_a_critical_job_writes_before_a_job_of_a_queue_that_waited_longer(
    path: Path, broker: StubBroker, holder: sqlite3.Connection, queue: str
) -> None:
    holder.execute("INSERT INTO t (who) VALUES ('holder')")  # holds the turn
    worker = run_worker(broker, threads=2)
    try:
        send(broker, queue, "broadcast")
        wait_for(lambda: taken(path, "background"), timeout=10, every=0.01)
        send(broker, "critical", "order")
        wait_for(lambda: taken(path, "waiting"), timeout=10, every=0.01)
        holder.commit()
        for name in (queue, "critical"):
            broker.join(name, timeout=10_000)
        worker.join()
    finally:
        holder.rollback()  # a failed wait lets the jobs finish (a no-op after the commit)
        worker.stop(timeout=10_000)
    assert rows(path) == ["holder", "order", "broadcast"]


def test_a_critical_job_never_gives_way_even_on_a_thread_that_ran_a_failed_bulk_job(
    path: Path, broker: StubBroker, holder: sqlite3.Connection
) -> None:
    worker = run_worker(broker, threads=1)  # the critical job runs on the same thread
    try:
        send(broker, "bulk", "lost", fail=True)
        broker.join("bulk", timeout=10_000, fail_fast=False)
        worker.join()
        holder.execute("INSERT INTO t (who) VALUES ('holder')")

        def broadcast() -> None:
            with background():
                connection = connect(path)
                connection.execute("INSERT INTO t (who) VALUES ('broadcast')")
                connection.commit()
                connection.close()

        other = threading.Thread(target=broadcast, daemon=True)
        other.start()
        wait_for(lambda: taken(path, "background"), timeout=10, every=0.01)
        send(broker, "critical", "order")
        wait_for(lambda: taken(path, "waiting"), timeout=10, every=0.01)
        holder.commit()
        broker.join("critical", timeout=10_000)
        worker.join()
        other.join(10)
    finally:
        holder.rollback()  # a failed wait lets the jobs finish (a no-op after the commit)
        worker.stop(timeout=10_000)
    assert rows(path) == ["holder", "order", "broadcast"]
