"""The stores a run owns: two Redis database numbers, and a PostgreSQL database if asked.

Redis databases 2 (the broker's) and 3 (Tidings' counters) are flushed before and
after a run, so only one run may use them at a time: `exclusive` holds a lock file for
the whole run. The PostgreSQL database is created for the run and dropped after it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import redis

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_HOST = "127.0.0.1"
# A Redis server of the run's own keeps other work on the machine out of its figures.
OWN_REDIS = "BENCH_REDIS_PORT" in os.environ
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


def _answers() -> bool:
    try:
        with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=1) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


@contextmanager
def redis_server() -> Iterator[None]:
    """The Redis the run uses, answering on `REDIS_PORT` while the block runs.

    With `BENCH_REDIS_PORT` set and nothing answering on that port, a `redis-server`
    is started there for the run (keeping nothing on disk) and stopped after it; a Redis
    already answering is used as it is (`redis_roles` says how its CPU is counted).
    RuntimeError if `redis-server` is not installed or does not answer in 10 s.
    """
    if not OWN_REDIS or _answers():
        yield
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(f"nothing answers on port {REDIS_PORT} and redis-server is missing")
    folder = tempfile.mkdtemp(prefix=f"tidings-bench-redis-{REDIS_PORT}-")
    server = subprocess.Popen(
        [
            binary,
            "--bind",
            REDIS_HOST,
            "--port",
            str(REDIS_PORT),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the run's redis-server on port {REDIS_PORT} did not start")
            time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def redis_pid() -> int | None:
    """The pid of the `redis-server` listening on `REDIS_PORT` here (its process title
    names the address), or None when none does: then the run's Redis is counted by name."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                words = handle.read().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if len(words) >= 2 and words[0] == "redis-server" and words[1].endswith(f":{REDIS_PORT}"):
            return int(entry)
    return None


def redis_roles() -> tuple[dict[str, int], dict[str, str]]:
    """How a `Sampler` counts the run's Redis: as the root `redis` when its process is
    found, else every `redis-server` on the machine by name."""
    pid = redis_pid()
    return ({"redis": pid}, {}) if pid is not None else ({}, {"redis": "redis-server"})


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
