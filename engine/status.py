"""What ops see with `tidings status`: queue depths, in flight, delayed, dead letters,
recent throughput from the receipts, and the supervised processes with their restarts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
from sqlalchemy import func
from sqlmodel import col, select

from engine import supervisor
from engine.broker import QUEUES
from engine.db import Database
from engine.models import Delivery, DeliveryEvent
from engine.redis_keys import RedisKeys, counters_url
from engine.settings import Settings
from engine.timeutil import now


def queues(client: redis.Redis, keys: RedisKeys) -> dict[str, dict[str, int]]:
    """Per queue: waiting, delayed, dead letters, and in flight (unacked) messages."""
    in_flight: dict[str, int] = dict.fromkeys(QUEUES, 0)
    for key in client.scan_iter(keys.unacked, count=1000):
        name = key.decode().rsplit(".", 1)[-1]
        if name in in_flight:
            in_flight[name] += int(client.scard(key))
    return {
        q: {
            "waiting": int(client.llen(keys.queue(q))),
            "delayed": int(client.llen(keys.delayed(q))),
            "dead": int(client.zcard(keys.dead(q))),
            "in_flight": in_flight[q],
        }
        for q in QUEUES
    }


def snapshot(settings: Settings) -> dict[str, Any]:
    """Queues and processes from Redis, delivery states and throughput from SQL."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    own = redis.Redis.from_url(counters_url(settings), socket_timeout=5)
    database = Database(settings)
    keys = RedisKeys.from_settings(settings)
    try:
        try:
            queue_state: dict[str, Any] = queues(client, keys)
        except redis.RedisError as exc:
            queue_state = {"error": str(exc)}
        try:
            views = supervisor.read(own, keys)
            processes: dict[str, Any] = {**supervisor.summary(views), "detail": views}
        except redis.RedisError as exc:
            processes = {"error": str(exc)}
        since = now() - timedelta(minutes=1)
        with database.session() as session:
            by_status = dict(
                session.exec(
                    select(Delivery.status, func.count()).group_by(col(Delivery.status))
                ).all()
            )
            recent = session.exec(
                select(func.count())
                .select_from(DeliveryEvent)
                .where(
                    col(DeliveryEvent.at) >= since,
                    col(DeliveryEvent.status).in_(("sent", "delivered")),
                )
            ).one()
        return {
            "queues": queue_state,
            "deliveries": by_status,
            "throughput_last_minute": {
                "sent_or_delivered": recent,
                "per_second": round(recent / 60, 1),
            },
            "processes": processes,
        }
    finally:
        own.close()
        client.close()
        database.close()
