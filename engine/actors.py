"""Dramatiq actors: they only wire the broker to planning and delivery.

`tidings worker` points Dramatiq at this module; importing it sets the global
broker from the process's settings.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from engine import delivery, planning, runtime
from engine.broker import DELIVER, PLAN, PLAN_CHUNK, make_broker
from engine.settings import get_settings

log = logging.getLogger("tidings.actors")
settings = get_settings()
broker = make_broker(settings)
dramatiq.set_broker(broker)


def _rt() -> runtime.Runtime:
    return runtime.current(settings, broker)


class CloseRuntime(Middleware):
    """Release SQL, Redis and channel connections when the worker stops."""

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        runtime.reset()


broker.add_middleware(CloseRuntime())


@dramatiq.actor(actor_name=PLAN, queue_name="normal", max_retries=8)
def plan(notification_id: int) -> None:
    """Cut a notification's audience into chunks and enqueue one job per chunk."""
    planning.plan(_rt(), notification_id)


@dramatiq.actor(actor_name=PLAN_CHUNK, queue_name="normal", max_retries=8)
def plan_chunk(notification_id: int, seq: int) -> None:
    """Plan one chunk of recipients: rules, caps, collapse, deliveries written in bulk."""
    planning.plan_chunk(_rt(), notification_id, seq)


@dramatiq.actor(actor_name="tidings.deliver_exhausted", queue_name="normal")
def deliver_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    """A deliver job out of retries: its deliveries end `failed`, never silently gone."""
    ids = message["args"][0]
    delivery.fail_exhausted(_rt(), ids, f"gave up after {retry_info.get('retries')} retries")


@dramatiq.actor(
    actor_name=DELIVER,
    queue_name="normal",
    max_retries=5,
    on_retry_exhausted="tidings.deliver_exhausted",
)
def deliver(delivery_ids: list[int]) -> None:
    """Send a batch of deliveries of one channel and record every outcome."""
    delivery.deliver(_rt(), delivery_ids)
