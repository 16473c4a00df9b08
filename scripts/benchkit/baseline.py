"""The baseline phase: the same broadcast as one Dramatiq message per recipient and channel.

Runs `scripts/baseline_actors.py` as its own worker (same processes and threads as
Tidings got) over the first M recipients, and times it until every message has left
its receipt in SQL.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import func, select
from sqlmodel import col

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification
from engine.timeutil import aware, now
from scripts.benchkit.audience import seed_caps
from scripts.benchkit.broadcast import BROADCAST, OFFER, outcomes
from scripts.benchkit.client import log
from scripts.benchkit.processes import Fleet, Sampler
from scripts.benchkit.stores import flush_redis, redis_roles

# As declared in scripts/baseline_actors.py; named here so the driver sets no global broker.
QUEUE = "baseline"
FAN_OUT = "baseline.broadcast"


def baseline(
    args: argparse.Namespace,
    settings: Settings,
    db: Database,
    fleet: Fleet,
    channels: list[str],
    capped: list[str],
) -> dict[str, Any]:
    """The same broadcast, one Dramatiq message per recipient and channel."""
    count = min(args.baseline_recipients, args.recipients)
    flush_redis()
    seed_caps(settings, [r for r in capped if r < f"b{count:07d}"], now())
    at = now()
    with db.session() as session:
        row = Notification(
            category=BROADCAST,
            audience={"baseline": count},
            data=OFFER,
            queue=QUEUE,
            status="planned",
            recipients=count,
            enqueued_at=at,
            created_at=at,
            updated_at=at,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        notification_id = row.id
    argv = [sys.executable, "-m", "dramatiq", "scripts.baseline_actors"]
    argv += ["--processes", str(args.processes), "--threads", str(args.threads)]
    poll = {"dramatiq_worker_timeout": str(settings.worker_timeout_ms)}
    fleet.start_dramatiq("baseline", [*argv, "--queues", QUEUE], args.processes, poll)
    redis_root, redis_name = redis_roles()
    sampler = Sampler({"workers": fleet.pid("baseline")} | redis_root, redis_name, pss=("workers",))
    sampler.start()
    expected = count * len(channels)
    broker = RedisBroker(url=settings.redis_url)  # type: ignore[no-untyped-call]
    broker.declare_queue(QUEUE)
    log(f"baseline: {count:,} recipients × {len(channels)} channels = {expected:,} messages")
    started, at = time.monotonic(), now()
    broker.enqueue(
        dramatiq.Message(
            queue_name=QUEUE,
            actor_name=FAN_OUT,
            args=(notification_id, count, channels),
            kwargs={},
            options={},
        )
    )
    broker.close()

    def written() -> int:
        with db.session() as session:
            return int(
                session.execute(
                    select(func.count())
                    .select_from(Delivery)
                    .where(col(Delivery.notification_id) == notification_id)
                ).scalar_one()
            )

    last, last_change, last_report = -1, time.monotonic(), time.monotonic()
    try:
        while (done := written()) < expected:
            if done != last:
                last, last_change = done, time.monotonic()
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                log(f"  {time.monotonic() - started:5.1f}s baseline receipts {done:,}/{expected:,}")
            if time.monotonic() - started > args.timeout or time.monotonic() - last_change > 60:
                raise TimeoutError(f"the baseline stopped at {done:,} of {expected:,} receipts")
            fleet.check("baseline")
            time.sleep(0.5)
    finally:
        usage = sampler.finish()
        fleet.stop("baseline")
    with db.session() as session:
        last_at = aware(
            session.execute(
                select(func.max(Delivery.updated_at)).where(
                    col(Delivery.notification_id) == notification_id
                )
            ).scalar_one()
        )
    assert last_at is not None
    seconds = (last_at - at).total_seconds()
    return {
        "recipients": count,
        "messages": expected,
        "seconds": round(seconds, 2),
        "observed_seconds": round(time.monotonic() - started, 1),
        "recipients_per_s": round(count / seconds),
        "messages_per_s": round(expected / seconds),
        "outcomes": outcomes(db, notification_id),
        "peak_worker_rss_mb": usage["workers"]["peak_rss_mb"],
        "usage": usage,
    }
