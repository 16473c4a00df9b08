"""Dramatiq actors: they only wire the broker to planning and delivery.

`tidings worker` points Dramatiq at this module; importing it sets the global
broker from the process's settings. Every job has one actor per queue, with the
queue's priority, so a worker serving several queues always takes critical work first.
The process's runtime is built when its worker boots (`runtime.Booted`); the queue's
middleware decides whether a job's writes give way (`engine.worker.middleware`).
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from engine.pipeline import delivery, events, planning
from engine.settings import get_settings
from engine.store.outages import ride_out
from engine.worker import runtime
from engine.worker.broker import (
    DELIVER,
    DELIVER_EXHAUSTED,
    DRAIN_EVENTS,
    EVENTS,
    PLAN,
    PLAN_CHUNK,
    PRIORITIES,
    actor_name,
    make_broker,
)

# A planned chunk allocates a few hundred thousand short-lived objects; a higher
# first-generation threshold stops the cyclic collector running dozens of times a chunk.
gc.set_threshold(50_000, 20, 20)
# SQLite and the sockets release the GIL on every row and every read; at the default 5 ms
# switch interval a thread holding the database's write lock then waits behind the busy
# threads for each row it writes (a convoy), and every other writer waits for it.
sys.setswitchinterval(0.0005)
settings = get_settings()
broker = make_broker(settings)
dramatiq.set_broker(broker)
booted = runtime.Booted(settings)
broker.add_middleware(booted)
broker.add_middleware(Prometheus())


def plan(notification_id: int) -> None:
    """Cut a notification's audience into chunks and enqueue one job per chunk."""
    planning.plan(booted.runtime, notification_id)


def plan_chunk(notification_id: int, seq: int) -> None:
    """Plan one chunk of recipients: rules, caps, collapse, deliveries written in bulk."""
    planning.plan_chunk(booted.runtime, notification_id, seq)


def deliver(delivery_ids: list[int]) -> None:
    """Send a batch of deliveries of one channel and record every outcome."""
    delivery.deliver(booted.runtime, delivery_ids)


def deliver_exhausted(message: dict[str, Any], retry_info: dict[str, Any]) -> None:
    """A deliver job out of retries: its deliveries end `failed`, never silently gone."""
    ids = message["args"][0]
    delivery.fail_exhausted(
        booted.runtime, ids, f"gave up after {retry_info.get('retries')} retries"
    )


def _declare(
    fn: Callable[..., None], name: str, *, later: int = 0, exhausted: bool = False, **options: Any
) -> None:
    """One actor per queue at the queue's priority plus `later`; `exhausted` routes a job
    out of retries to its queue's handler."""
    for queue, base in PRIORITIES.items():
        if exhausted:
            options["on_retry_exhausted"] = actor_name(DELIVER_EXHAUSTED, queue)
        declare = dramatiq.actor(
            actor_name=actor_name(name, queue), queue_name=queue, priority=base + later, **options
        )
        declare(_riding_out(fn))


def _riding_out(fn: Callable[..., None]) -> Callable[..., None]:
    """`fn` waiting out a database or Redis that does not answer (backing off, up to
    `TIDINGS_OUTAGE_WAIT` seconds) instead of spending its bounded retries: every job
    starts with a conditional claim, so running it again from the start is safe."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        ride_out(lambda: fn(*args, **kwargs), wait=settings.outage_wait, what=fn.__name__)

    return run


# Within a queue, sending what is planned goes before planning more, so a broadcast's
# first messages go out while the rest of its audience is still being planned.
_declare(plan, PLAN, later=5, max_retries=8)
_declare(plan_chunk, PLAN_CHUNK, later=5, max_retries=8)
_declare(deliver_exhausted, DELIVER_EXHAUSTED)
_declare(deliver, DELIVER, exhausted=True, max_retries=5)


def drain_events() -> None:
    """Push waiting delivery events to the registered endpoints, in batches; a drain that
    ran out of its time budget hands the rest to the next one."""
    if events.drain(booted.runtime):
        booted.runtime.dispatch.drain_events()


# Its own queue, behind everything else a worker serving several queues takes.
dramatiq.actor(
    actor_name=actor_name(DRAIN_EVENTS, EVENTS), queue_name=EVENTS, priority=200, max_retries=3
)(_riding_out(drain_events))
