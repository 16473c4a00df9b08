"""What ops see with `tidings status`: queue depths, in flight, delayed, dead letters,
recent throughput from the receipts, and the supervised processes with their restarts.

Queue depths come from the broker: Redis keys, or RabbitMQ's own message counts (which
do not include messages a worker holds unacknowledged, so `in_flight` is null there).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import redis
from dramatiq.errors import DramatiqError
from pika.exceptions import AMQPError
from sqlalchemy import func
from sqlmodel import col, select

from engine.ops import supervisor
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent
from engine.store.redis_keys import RedisKeys, counters_url
from engine.store.states import EventStatus
from engine.timeutil import now
from engine.worker.broker import QUEUES, broker_url, is_rabbitmq

Depths = dict[str, dict[str, int | None]]


def queues(client: redis.Redis, keys: RedisKeys) -> Depths:
    """Per queue on a Redis broker: waiting, delayed, dead letters, and in flight
    (unacked) messages."""
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


def rabbitmq_queues(settings: Settings) -> Depths:
    """Per queue on RabbitMQ: waiting, delayed and dead-lettered messages."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    broker = RabbitmqBroker(url=broker_url(settings), middleware=[])
    try:
        counts = {q: broker.get_queue_message_counts(q) for q in QUEUES}
    finally:
        broker.close()
    return {
        q: {"waiting": main, "delayed": delayed, "dead": dead, "in_flight": None}
        for q, (main, delayed, dead) in counts.items()
    }


# What reading the broker's queues can raise when it is down.
BROKER_ERRORS = (redis.RedisError, DramatiqError, AMQPError, OSError)


def queue_reader(settings: Settings) -> tuple[Callable[[], Depths], Callable[[], None]]:
    """(read, close) for the depths of the broker's queues."""
    if is_rabbitmq(broker_url(settings)):
        return (lambda: rabbitmq_queues(settings)), (lambda: None)
    client = redis.Redis.from_url(broker_url(settings), socket_timeout=5)
    keys = RedisKeys.from_settings(settings)
    return (lambda: queues(client, keys)), client.close


def snapshot(settings: Settings, *, database: Database | None = None) -> dict[str, Any]:
    """Queues from the broker, processes and the scheduler's last run from Redis, delivery
    states and throughput from SQL.

    `database`: an open one to read (the API's); by default one is opened and closed here.
    Shape: `{"queues": {name: {"waiting", "delayed", "dead", "in_flight"}} | {"error"},
    "deliveries": {status: count}, "throughput_last_minute": {"sent_or_delivered",
    "per_second"}, "processes": {..., "detail": [...]} | {"error"},
    "scheduler": {"last_run": ISO 8601 | None} | {"error"}}`.
    """
    read, close = queue_reader(settings)
    own = redis.Redis.from_url(counters_url(settings), socket_timeout=5)
    owned = database is None
    database = database or Database(settings)
    keys = RedisKeys.from_settings(settings)
    try:
        try:
            queue_state: dict[str, Any] = read()
        except BROKER_ERRORS as exc:
            queue_state = {"error": str(exc)}
        try:
            views = supervisor.read(own, keys)
            processes: dict[str, Any] = {**supervisor.summary(views), "detail": views}
        except redis.RedisError as exc:
            processes = {"error": str(exc)}
        try:
            ran = own.get(keys.scheduler_ran)
            last = ran.decode() if isinstance(ran, bytes) else ran
            scheduler: dict[str, Any] = {"last_run": last or None}
        except redis.RedisError as exc:
            scheduler = {"error": str(exc)}
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
                    col(DeliveryEvent.status).in_((EventStatus.SENT, EventStatus.DELIVERED)),
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
            "scheduler": scheduler,
        }
    finally:
        own.close()
        close()
        if owned:
            database.close()


def table(snapshot: dict[str, Any]) -> str:
    """`snapshot` for a terminal: a queue table, delivery states, throughput, processes."""
    lines: list[str] = []
    queue_state = snapshot["queues"]
    if "error" in queue_state:
        lines.append(f"queues       the broker did not answer: {queue_state['error']}")
    else:
        lines.append(f"{'queue':<12}{'waiting':>9}{'delayed':>9}{'in flight':>11}{'dead':>7}")
        for name, q in queue_state.items():
            # A broker that cannot count something (RabbitMQ's in-flight work) says None: "-".
            cells = [
                "-" if q[k] is None else q[k] for k in ("waiting", "delayed", "in_flight", "dead")
            ]
            lines.append(f"{name:<12}{cells[0]:>9}{cells[1]:>9}{cells[2]:>11}{cells[3]:>7}")
    lines.append("")
    states = snapshot["deliveries"]
    shown = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) if states else "none yet"
    lines.append(f"deliveries   {shown}")
    recent = snapshot["throughput_last_minute"]
    lines.append(
        f"throughput   {recent['sent_or_delivered']} sent or delivered in the last minute "
        f"({recent['per_second']}/s)"
    )
    scheduler = snapshot.get("scheduler", {})
    if "error" in scheduler:
        lines.append(f"scheduler    Redis did not answer: {scheduler['error']}")
    else:
        lines.append(f"scheduler    last run {scheduler.get('last_run') or 'not recorded yet'}")
    processes = snapshot["processes"]
    if "error" in processes:
        lines.append(f"processes    Redis did not answer: {processes['error']}")
        return "\n".join(lines)
    detail = processes.get("detail", [])
    if not detail:
        lines.append("processes    no supervisor is running (tidings worker / tidings up)")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'process':<24}{'host':<16}{'pid':>8}  {'state':<9}{'restarts':>9}  last exit")
    for view in detail:
        for child in view["processes"]:
            last = child.get("last_exit") or {}
            exit_text = f"{last['how']} at {last['at'][:19]}" if last else "-"
            state = "running" if child["running"] else "waiting"
            lines.append(
                f"{view['role'] + '/' + child['name']:<24}{view['host'][:15]:<16}"
                f"{child['pid'] or '-':>8}  {state:<9}{child['restarts']:>9}  {exit_text}"
            )
    return "\n".join(lines)
