"""Claims are leases: who holds a delivery or a plan chunk, and until when.

A job claims its rows for `claimed_by` (its worker process) until `lease_until`, a
little longer than the channel's timeout. Every worker process that holds claims keeps
a liveness key in Redis alive. A lease that ran out means little on its own (a big
batch, a slow provider, a database that was down while the receipts waited), so a row
is taken back only when its lease ran out *and* its holder's liveness key is gone: the
process died. The scheduler and a redelivered message both take back such rows, in
seconds; the stall timer (`TIDINGS_STALL_AFTER`) stays the last resort.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

import redis

from engine.settings import Settings
from engine.store.redis_keys import RedisKeys

log = logging.getLogger("tidings.leases")


def holder_id() -> str:
    """A name for this worker process, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def delivery_lease(settings: Settings, at: datetime) -> datetime:
    """When a delivery claimed at `at` may be taken back if its holder is gone."""
    return at + timedelta(seconds=settings.http_timeout + settings.lease_margin)


def chunk_lease(settings: Settings, at: datetime) -> datetime:
    """When a plan chunk claimed at `at` may be taken back if its holder is gone."""
    return at + timedelta(seconds=settings.chunk_lease)


class Liveness:
    """This process's liveness key, renewed by a daemon thread while the process runs.

    Started on the first claim, so the API and the scheduler never hold one.
    """

    def __init__(self, settings: Settings, client: redis.Redis, keys: RedisKeys) -> None:
        self.id = holder_id()
        self.key = keys.alive(self.id)
        self.client = client
        self.every = settings.heartbeat_interval
        self.ttl = settings.liveness_ttl
        self._started = False
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> str:
        """Start renewing (once); returns this process's holder id."""
        with self._lock:
            if not self._started:
                self._started = True
                self._beat()
                threading.Thread(target=self._run, name="tidings-liveness", daemon=True).start()
        return self.id

    def _beat(self) -> None:
        try:
            self.client.set(self.key, b"1", ex=max(1, round(self.ttl)))
        except redis.RedisError as exc:  # Redis is down: the claims' leases still hold
            log.warning("could not renew liveness: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._beat()

    def stop(self) -> None:
        """Stop renewing and drop the key: a process that stops cleanly holds nothing."""
        self._stop.set()
        if self._started:
            with contextlib.suppress(redis.RedisError):
                self.client.delete(self.key)


class Judge:
    """Decides which holders are gone, waiting out a Redis that just lost its keys.

    After Redis restarted empty every holder's key is missing until its next renewal, so
    for one liveness TTL after a reset nobody is declared gone.
    """

    def __init__(self, settings: Settings, client: redis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys
        self.ttl = settings.liveness_ttl
        self.quiet_until = 0.0

    def reset(self) -> None:
        """Redis lost its keys (or could not be reached): wait a TTL before judging."""
        self.quiet_until = time.monotonic() + self.ttl

    def gone(self, holders: Iterable[str | None]) -> set[str]:
        """Those of `holders` whose liveness key is missing (none during the wait)."""
        names = sorted({h for h in holders if h})
        if not names or time.monotonic() < self.quiet_until:
            return set()
        found = self.client.mget([self.keys.alive(h) for h in names])
        return {h for h, value in zip(names, found, strict=True) if value is None}
