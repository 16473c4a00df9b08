"""The Dramatiq broker and the queues Tidings' work travels on.

Work is routed by urgency: `critical` carries transactional and critical
notifications, `normal` everyday ones, `bulk` segment broadcasts, so that a
million-recipient broadcast never sits in front of an "order delivered".

The queues live in Redis by default, or in RabbitMQ when `TIDINGS_BROKER_URL` is an
`amqp://` URL: durable queues whose messages survive a broker restart, a delay queue
and a dead-letter queue beside each (Dramatiq's `RabbitmqBroker`), and publisher
confirms, so a message counts as enqueued only once RabbitMQ has taken it. Redis then
keeps only Tidings' counters. On Redis, idle workers sleep until an enqueue wakes them
(`engine.worker.waking`); RabbitMQ pushes messages to its consumers by itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

from engine.settings import Settings
from engine.store.redis_keys import RedisKeys
from engine.worker.middleware import GiveWay
from engine.worker.waking import WakingRedisBroker

CRITICAL = "critical"
# Delivery events pushed to the platform's endpoints travel on a queue of their own,
# so a broadcast's events never stand in front of its planning or sending.
EVENTS = "events"
QUEUES = (CRITICAL, "normal", "bulk", EVENTS)
# A worker that consumes several queues takes critical work first (lower runs sooner).
PRIORITIES = {"critical": 0, "normal": 10, "bulk": 100}
DRAIN_EVENTS = "tidings.drain_events"
PLAN = "tidings.plan"
PLAN_CHUNK = "tidings.plan_chunk"
DELIVER = "tidings.deliver"
DELIVER_EXHAUSTED = "tidings.deliver_exhausted"


def actor_name(base: str, queue: str) -> str:
    """Each job has one actor per queue, so its priority follows the queue."""
    return f"{base}.{queue}"


def broker_url(settings: Settings) -> str:
    """Where the queues live: `TIDINGS_BROKER_URL`, else Tidings' Redis."""
    return settings.broker_url or settings.redis_url


def is_rabbitmq(url: str) -> bool:
    return urlsplit(url).scheme in ("amqp", "amqps")


def middleware_stack() -> list[Middleware]:
    """The middleware every Tidings broker runs its jobs through: Dramatiq's limits,
    callbacks and retries, and critical jobs' writes going first (`GiveWay`)."""
    return [
        AgeLimit(),
        TimeLimit(time_limit=10 * 60 * 1000),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=8, min_backoff=500, max_backoff=60_000),
        GiveWay(first=[CRITICAL]),
    ]


def make_broker(settings: Settings) -> dramatiq.Broker:
    """The broker for `broker_url(settings)` with `middleware_stack()`, its queues declared."""
    stack = middleware_stack()
    url = broker_url(settings)
    broker: dramatiq.Broker
    if is_rabbitmq(url):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, middleware=stack, confirm_delivery=True)
    else:
        broker = WakingRedisBroker(
            url=url,
            keys=RedisKeys.from_settings(settings),
            idle_timeout_ms=settings.worker_timeout_ms,
            heartbeat_timeout=int(settings.broker_heartbeat_timeout * 1000),
            middleware=stack,
        )
    for queue in QUEUES:
        broker.declare_queue(queue)
    return broker


def redis_of(broker: dramatiq.Broker, fallback: redis.Redis) -> redis.Redis:
    """The Redis client holding `broker`'s queues, else `fallback`."""
    client = getattr(broker, "client", None) if isinstance(broker, RedisBroker) else None
    return client if isinstance(client, redis.Redis) else fallback


class Dispatcher:
    """Enqueues Tidings' jobs by actor name, so senders need no actor imports.

    Messages carry ids and small values only; everything else is read from SQL.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    def _send(
        self, actor: str, queue: str, args: tuple[Any, ...], delay_ms: int | None = None
    ) -> None:
        options: dict[str, Any] = {}
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=actor_name(actor, queue),
            args=args,
            kwargs={},
            options=options,
        )
        self.broker.enqueue(message, delay=delay_ms)

    def plan(self, notification_id: int, queue: str) -> None:
        """Plan a notification: cut its audience into chunks."""
        self._send(PLAN, queue, (notification_id,))

    def plan_chunk(
        self, notification_id: int, seq: int, queue: str, delay_ms: int | None = None
    ) -> None:
        """Plan one chunk of a notification's audience (in `delay_ms`, if given)."""
        self._send(PLAN_CHUNK, queue, (notification_id, seq), delay_ms)

    def deliver(self, delivery_ids: list[int], queue: str, delay_ms: int | None = None) -> None:
        """Send a batch of deliveries of one channel."""
        self._send(DELIVER, queue, (delivery_ids,), delay_ms)

    def drain_events(self, delay_ms: int | None = None) -> None:
        """Push waiting delivery events to the registered endpoints."""
        self._send(DRAIN_EVENTS, EVENTS, (), delay_ms)
