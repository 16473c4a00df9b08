"""The broadcast as most teams would first write it: one Dramatiq message per recipient and channel.

`scripts/bench.py` runs this module as its own worker and compares it with Tidings in
the same run. Each message queries the recipient and their preferences, asks the same
rules (`engine.pipeline.policy`) for its one channel, counts the caps in Redis, renders the
copy, POSTs the webhook and inserts its receipt in a transaction of its own. It shares
Tidings' tables, rules and templates, so the difference measured is the shape of the
work (per message versus per chunk), not the quality of the code around it. It is
generous to itself: category and notification are cached per process, and webhooks
reuse a keep-alive connection per thread.

    python -m dramatiq scripts.baseline_actors --queues baseline    # reads TIDINGS_* settings
"""

from __future__ import annotations

import http.client
import threading
from typing import Any
from urllib.parse import urlsplit

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from sqlalchemy import select
from sqlmodel import col

from channels.base import ADDRESS_FIELDS
from channels.base import Message as ChannelMessage
from channels.http import dump
from channels.webhook import WebhookChannel, payload
from engine.pipeline import policy
from engine.pipeline.content import Composer
from engine.pipeline.counters import CapCheck, Counters
from engine.pipeline.templates import RenderError
from engine.settings import get_settings
from engine.store import installation
from engine.store.db import Database
from engine.store.models import Category, Delivery, DeliveryEvent, Notification, Recipient
from engine.store.states import DeliveryStatus
from engine.timeutil import iso, now
from preferences import store

QUEUE = "baseline"
BROADCAST = "baseline.broadcast"
NOTIFY = "baseline.notify"

settings = get_settings()
broker = RedisBroker(url=settings.redis_url)  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)

_lock = threading.Lock()
_local = threading.local()
_state: dict[str, Any] = {}
_cached: dict[int, tuple[Notification, Category]] = {}


def _resources() -> tuple[Database, Counters, WebhookChannel]:
    """This process's database, counters and signer, built on first use (after the fork)."""
    with _lock:
        if not _state:
            _state["db"] = Database(settings)
            _state["counters"] = Counters.from_settings(settings)
            _state["counters"].mark_ready(now())  # the baseline never rebuilds from SQL
            # Signs with the installation's webhook secret, as Tidings' own workers do.
            _state["webhook"] = WebhookChannel(installation.bind(settings, _state["db"]))
        return _state["db"], _state["counters"], _state["webhook"]


def _notification(db: Database, notification_id: int) -> tuple[Notification, Category]:
    with _lock:
        found = _cached.get(notification_id)
    if found is None:
        with db.session() as session:
            notification = session.get(Notification, notification_id)
            assert notification is not None, f"no notification {notification_id}"
            category = session.get(Category, notification.category)
            assert category is not None, f"no category {notification.category}"
        found = (notification, category)
        with _lock:
            _cached[notification_id] = found
    return found


def _post(url: str, body: str, headers: dict[str, str]) -> int:
    """POST over this thread's keep-alive connection; returns the HTTP status."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
    for attempt in (1, 2):
        if conn is None:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
            _local.conn = conn
        try:
            conn.request(
                "POST",
                parts.path or "/",
                body=body.encode(),
                headers={**headers, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            return response.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = _local.conn = None
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dramatiq.actor(actor_name=BROADCAST, queue_name=QUEUE, max_retries=0)
def broadcast(notification_id: int, limit: int, channels: list[str]) -> None:
    """Fan out: one `notify` message per recipient and channel."""
    db, _, _ = _resources()
    with db.session() as session:
        ids = list(
            session.execute(
                select(col(Recipient.id)).order_by(col(Recipient.id)).limit(limit)
            ).scalars()
        )
    for rid in ids:
        for channel in channels:
            notify.send(notification_id, rid, channel)


@dramatiq.actor(actor_name=NOTIFY, queue_name=QUEUE, max_retries=3)
def notify(notification_id: int, recipient_id: str, channel: str) -> None:
    """One recipient, one channel: preferences, rules, caps, render, send, receipt."""
    db, counters, webhook = _resources()
    notification, category = _notification(db, notification_id)
    at = now()
    with db.session() as session:
        recipient = session.get(Recipient, recipient_id)
        assert recipient is not None
        prefs = store.load_one(session, recipient, settings=settings)
    rules = policy.rules_of(category)
    reachable = [
        name
        for name, field in ADDRESS_FIELDS.items()
        if field is None or getattr(recipient, field, None)
    ]
    request = policy.Request(channels=(channel,))
    decisions = policy.decide(rules, request, prefs, reachable, at)
    if policy.counts_against_caps(decisions) and (limits := policy.cap_limits(rules, prefs)):
        check = CapCheck(recipient_id, str(notification_id), prefs.quiet_hours.timezone, limits)
        (resets_at,) = counters.admit([check], at)
        if resets_at is not None:
            decisions = policy.over_cap(rules, decisions, resets_at)
    decision = next((d for d in decisions if d.channel == channel), None)
    if decision is None:  # a `low` broadcast routes interrupting channels away
        return
    row: dict[str, Any] = {
        "status": decision.status,
        "reason": decision.reason,
        "due_at": decision.due_at,
        "locale": recipient.locale,
        "attempts": 0,
    }
    events = [decision.status]
    if decision.status == DeliveryStatus.QUEUED:
        row.update(_send(webhook, notification, category, recipient, channel, at), attempts=1)
        delivered = row["status"] == DeliveryStatus.DELIVERED
        sent = [DeliveryStatus.SENT] if channel != policy.INBOX and delivered else []
        events = [DeliveryStatus.QUEUED, *sent, row["status"]]
    with db.session() as session:
        delivery = Delivery(
            notification_id=notification_id,
            recipient_id=recipient_id,
            channel=channel,
            category=category.key,
            created_at=at,
            updated_at=now(),
            **row,
        )
        session.add(delivery)
        session.flush()
        assert delivery.id is not None
        for status in events:
            reason = decision.reason if status == decision.status else None
            session.add(DeliveryEvent(delivery_id=delivery.id, status=status, reason=reason))


def _send(
    webhook: WebhookChannel,
    notification: Notification,
    category: Category,
    recipient: Recipient,
    channel: str,
    at: Any,
) -> dict[str, Any]:
    """Render and hand one message to its channel; the fields of its receipt."""
    try:
        copy = Composer().compose(notification, category, channel, recipient, dict)
    except RenderError as exc:
        return {"status": DeliveryStatus.FAILED, "error": str(exc)}
    fields: dict[str, Any] = {"title": copy.title, "body": copy.body, "locale": copy.locale}
    if channel == policy.INBOX:
        return {**fields, "status": DeliveryStatus.DELIVERED}
    if channel != "webhook" or not recipient.webhook_url:
        return {
            **fields,
            "status": DeliveryStatus.FAILED,
            "error": f"the baseline does not send {channel}",
        }
    # The receipt is inserted after the send, so its id cannot name the message.
    message = ChannelMessage(
        delivery_id=0,
        notification_id=notification.id or 0,
        recipient_id=recipient.id,
        category=category.key,
        channel=channel,
        address=recipient.webhook_url,
        locale=copy.locale,
        title=copy.title,
        body=copy.body,
        data=notification.data or {},
        created_at=iso(at),
    )
    body = dump(payload(message), channel)
    msg_id = f"msg_{notification.id}_{recipient.id}"
    status = _post(recipient.webhook_url, body, webhook.headers(msg_id, body))
    if 200 <= status < 300:
        return {**fields, "status": DeliveryStatus.DELIVERED}
    return {**fields, "status": DeliveryStatus.FAILED, "error": f"HTTP {status}"}
