"""Dramatiq's Redis broker, with idle workers woken by new work instead of polling.

Dramatiq's Redis consumer polls an empty queue with backoff up to the worker's timeout,
so an idle `tidings up` kept making Lua calls every 10-100 ms per queue: a fifth of a
core doing nothing, and a job waited up to a poll interval to be noticed. Here every
enqueue also pushes a token onto the queue's wake-up list (kept at most one long), and a
consumer that found its queue empty blocks on that list (`BLPOP`) until a token arrives,
the next delayed message it holds falls due, or `idle_timeout_ms` passes.

No enqueue is missed: a consumer only blocks after a fetch found the queue empty, and any
message enqueued after that fetch leaves a token behind that wakes a blocked consumer or
is taken by the next one about to block. The timeout still bounds the wait for work that
arrives without a token (messages Dramatiq's maintenance takes back from a dead worker)
and keeps the broker's heartbeat beating (each fetch is one).

Maintenance — putting a dead worker's fetched-but-unacknowledged messages back on their
queue — runs in Dramatiq on a random one in a thousand commands. A polling worker makes
thousands of commands a minute; a waking one makes a few, so a dead worker's prefetched
jobs would wait for the stall timer. Here each consumer asks for maintenance of its queue
on its first fetch at least `maintenance_interval_ms` after the last one (a third of the
heartbeat timeout), on top of Dramatiq's chance: a dead worker's jobs are back on their
queue within about 4/3 of the heartbeat timeout plus one idle wait.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.redis import MAINTENANCE_COMMAND_BLACKLIST, RedisBroker, _RedisConsumer
from dramatiq.common import current_millis
from dramatiq.errors import ConnectionClosed

from engine.store.redis_keys import RedisKeys

# While the worker shuts down, consumers keep fetching (their fetches are the heartbeat
# that keeps jobs under way theirs) at this pace instead of blocking.
STOPPING_POLL_S = 0.05
# How much longer than a blocking wait its connection waits for Redis to answer (s).
WAIT_MARGIN_S = 5.0


class WakingRedisBroker(RedisBroker):
    """A `RedisBroker` whose consumers sleep until work arrives (see the module).

    `idle_timeout_ms`: the longest an idle consumer blocks before fetching unprompted;
    capped at a third of `heartbeat_timeout` (ms) so an idle worker is never taken for
    dead.
    """

    def __init__(
        self, *, keys: RedisKeys, idle_timeout_ms: int, heartbeat_timeout: int, **options: Any
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            namespace=keys.dramatiq, heartbeat_timeout=heartbeat_timeout, **options
        )
        self.keys = keys
        self.idle_timeout_ms = max(1, min(idle_timeout_ms, heartbeat_timeout // 3))
        self.maintenance_interval_ms = max(1, heartbeat_timeout // 3)
        # Set by a consumer whose queue is due for maintenance, read by the next command
        # its own thread dispatches (Dramatiq runs each consumer in a thread of its own).
        self._maintain = threading.local()
        # Blocked consumers wait on connections of their own, whose socket timeout (redis-py
        # reads with one by default) outlasts the longest wait.
        pool = self.client.connection_pool
        self.waiting = redis.Redis(
            connection_pool=pool.__class__(
                connection_class=pool.connection_class,
                **{
                    **pool.connection_kwargs,
                    "socket_timeout": self.idle_timeout_ms / 1000 + WAIT_MARGIN_S,
                },
            )
        )
        self.stopping = threading.Event()
        self.own_wake = keys.wake_worker(self.broker_id)
        self._consumers: set[WakingConsumer] = set()
        self._lock = threading.Lock()

    def _should_do_maintenance(self, command: str) -> int:
        """1 when this thread's consumer asked for maintenance, else Dramatiq's chance (the
        dispatch script reads the flag as the string "1")."""
        if command not in MAINTENANCE_COMMAND_BLACKLIST and getattr(self._maintain, "due", False):
            self._maintain.due = False
            return 1
        return int(super()._should_do_maintenance(command))

    def maintain_next(self) -> None:
        """Have the next fetch or enqueue dispatched by this thread run maintenance."""
        self._maintain.due = True

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> WakingConsumer:
        """A consumer of `queue_name` that blocks until woken (`timeout` is not used: the
        broker's `idle_timeout_ms` bounds the wait)."""
        consumer = WakingConsumer(self, queue_name, prefetch, self.idle_timeout_ms)
        with self._lock:
            self._consumers.add(consumer)
        return consumer

    def forget(self, consumer: WakingConsumer) -> None:
        with self._lock:
            self._consumers.discard(consumer)

    def enqueue(
        self, message: dramatiq.Message[Any], *, delay: int | None = None
    ) -> dramatiq.Message[Any]:
        """Enqueue as Dramatiq does, then wake a consumer of the queue it went to."""
        sent: dramatiq.Message[Any] = super().enqueue(message, delay=delay)
        self.wake(sent.queue_name)
        return sent

    def wake(self, queue_name: str) -> None:
        """Leave one token on `queue_name`'s wake-up list: it wakes one blocked consumer,
        or the next one about to block."""
        key = self.keys.wake(queue_name)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.lpush(key, 1)
                pipe.ltrim(key, 0, 0)
                pipe.execute()
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def stop_waiting(self) -> None:
        """Wake this process's blocked consumers and keep them from blocking again: the
        worker is shutting down."""
        self.stopping.set()
        with self._lock:
            count = len(self._consumers)
        if count:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.lpush(self.own_wake, *([1] * count))
                pipe.expire(self.own_wake, 60)
                pipe.execute()


class WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, blocking on its queue's wake-up list when idle."""

    def __init__(
        self, broker: WakingRedisBroker, queue_name: str, prefetch: int, timeout: int
    ) -> None:
        super().__init__(broker, queue_name, prefetch, 0)  # type: ignore[no-untyped-call]
        self.waking = broker
        self.idle_timeout_s = timeout / 1000
        self.wake_keys = [broker.keys.wake(queue_name), broker.own_wake]
        # Delayed messages handed out and not yet acknowledged: redis id -> eta (epoch ms).
        self.etas: dict[str, int] = {}
        self.etas_lock = threading.Lock()
        # Set when a message is acknowledged: room to prefetch again.
        self.freed = threading.Event()
        self.maintained_at = 0

    def _settled(self, message: Any) -> None:
        with self.etas_lock:
            self.etas.pop(message.options.get("redis_message_id"), None)

    def ack(self, message: Any) -> None:
        self._settled(message)
        try:
            super().ack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def nack(self, message: Any) -> None:
        self._settled(message)
        try:
            super().nack(message)  # type: ignore[no-untyped-call]
        finally:
            self.freed.set()

    def requeue(self, messages: Any) -> None:
        messages = list(messages)
        super().requeue(messages)  # type: ignore[no-untyped-call]
        if messages:
            self.waking.wake(self.queue_name)

    def __next__(self) -> Any:
        full = self.outstanding_message_count >= self.prefetch
        now = current_millis()
        if now - self.maintained_at >= self.waking.maintenance_interval_ms:
            self.maintained_at = now
            self.waking.maintain_next()
        # With a zero timeout, Dramatiq's own miss does not sleep.
        message = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            eta = message.options.get("eta")
            if isinstance(eta, int | float):
                with self.etas_lock:
                    self.etas[message.options["redis_message_id"]] = int(eta)
            return message
        wait = self.idle_timeout_s
        with self.etas_lock:
            due = min(self.etas.values(), default=None)
        if due is not None:
            wait = min(wait, (due - current_millis()) / 1000)
        if wait <= 0:
            return None
        if self.waking.stopping.is_set():
            time.sleep(min(wait, STOPPING_POLL_S))
        elif full:
            # Nothing was fetched because the prefetch is full: wait for an ack, not a token.
            self.freed.wait(wait)
            self.freed.clear()
        else:
            self._block(wait)
        return None

    def _block(self, seconds: float) -> None:
        """Wait for a wake-up token (or `seconds`)."""
        try:
            self.waking.waiting.blpop(self.wake_keys, timeout=max(seconds, 0.001))
        except redis.ConnectionError as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.waking.forget(self)
        super().close()
