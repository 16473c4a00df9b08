"""The stores a run owns: two Redis database numbers, and a PostgreSQL database if asked.

Redis databases 2 (the broker's) and 3 (Tidings' counters) are flushed before and
after a run, so only one run may use them at a time: `exclusive` holds a lock file for
the whole run. The PostgreSQL database is created for the run and dropped after it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST = "127.0.0.1"
# A Redis server of the run's own keeps other work on the machine out of its figures.
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
BROKER_DB = 2
COUNTERS_DB = 3


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold the benchmark's lock on this machine; RuntimeError if another run holds it.

    Two runs at once would flush each other's queues and counters mid-broadcast.
    """
    path = Path(tempfile.gettempdir()) / f"tidings-bench-redis-{REDIS_PORT}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another benchmark is running here (it holds {path.name}); "
                f"it owns Redis databases {BROKER_DB} and {COUNTERS_DB}: wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def flush_redis() -> None:
    """Empty the two Redis databases the benchmark owns."""
    for number in (BROKER_DB, COUNTERS_DB):
        with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number) as client:
            client.flushdb()


@contextmanager
def flushed_redis() -> Iterator[None]:
    """The benchmark's Redis databases, empty before and after."""
    flush_redis()
    try:
        yield
    finally:
        flush_redis()


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards."""
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
