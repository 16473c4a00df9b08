"""What a worker process holds while it runs jobs: SQL, Redis counters, the broker,
opened channels, and an event loop thread for the async channels."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import dramatiq

from channels.registry import Channels
from engine.pipeline.counters import Counters
from engine.settings import Settings
from engine.store import installation
from engine.store.db import Database
from engine.store.leases import Judge, Liveness
from engine.store.redis_keys import RedisKeys
from engine.worker.broker import Dispatcher, redis_of
from engine.worker.sentinel import Sentinel
from preferences.links import Links

T = TypeVar("T")


class Runtime:
    """Per-process resources for the pipeline, built once and shared by worker threads."""

    def __init__(self, settings: Settings, broker: dramatiq.Broker) -> None:
        self.db = Database(settings)
        self.settings = settings = installation.bind(settings, self.db)
        self.counters = Counters.from_settings(settings)
        self.dispatch = Dispatcher(broker)
        self.links = Links(settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tidings-io", daemon=True
        )
        self._thread.start()
        self.channels = Channels(settings)
        self.run(self.channels.open())
        # Liveness, the judge of gone holders and the sentinel share the broker's Redis
        # database: a Redis that restarts empty loses all three together.
        signals = redis_of(broker, self.counters.client)
        keys = RedisKeys.from_settings(settings)
        self.liveness = Liveness(settings, signals, keys)
        self.judge = Judge(settings, signals, keys)
        self.sentinel = Sentinel(signals, keys.broker_sentinel)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this process's I/O loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        self.liveness.stop()
        self.run(self.channels.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.counters.close()
        self.db.close()


_lock = threading.Lock()
_current: Runtime | None = None


def current(settings: Settings, broker: dramatiq.Broker) -> Runtime:
    """This process's runtime, built on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = Runtime(settings, broker)
        return _current


def reset() -> None:
    """Close this process's runtime (worker shutdown, tests)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
            _current = None
