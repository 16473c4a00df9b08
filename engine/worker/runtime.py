"""What a worker process holds while it runs jobs: SQL, Redis counters, the broker,
opened channels, and an event loop thread for the async channels.

A worker process builds its `Runtime` once, as it boots (`Booted`), and closes it when it
stops; its actors only pass it on. The scheduler builds one of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import dramatiq
from dramatiq.middleware import Middleware, MiddlewareError

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
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start a coroutine on this process's I/O loop; its result comes in the future,
        while the calling thread goes on with other work."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        self.liveness.stop()
        self.run(self.channels.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self.counters.close()
        self.db.close()


class BootFailed(MiddlewareError):
    """The worker process could not build its runtime; it stops instead of taking jobs."""


class Booted(Middleware):
    """Builds the worker process's `Runtime` before its threads take any job, and closes
    it once they have stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        """This process's runtime; raises `RuntimeError` before the worker boots or after
        it stops."""
        if self._runtime is None:
            raise RuntimeError("the worker has not booted: its runtime is not built")
        return self._runtime

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Dramatiq logs and ignores a middleware's failure here, except its own errors:
        # a worker without its runtime must not start taking jobs.
        try:
            self._runtime = Runtime(self.settings, broker)
        except Exception as exc:
            raise BootFailed(f"cannot build the worker's runtime: {exc}") from exc

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
