"""Delivering: claim a batch of queued deliveries, render them, send them through their
channel concurrently, and record every outcome in bulk.

A delivery is claimed (`queued` → `sending`) in one conditional UPDATE, so two jobs
for the same ids never both send. A re-send after a crash carries the same ids, so
the webhook-id and Message-ID stay the same and the receiver can drop the copy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from channels.base import ADDRESS_FIELDS, Message, Sent
from channels.errors import PermanentError, TransientError
from engine import bulk, metrics
from engine.content import Composer
from engine.models import Category, Delivery, Notification, Recipient
from engine.planning import page_links
from engine.runtime import Runtime
from engine.templates import RenderError
from engine.timeutil import aware, iso, now

log = logging.getLogger("tidings.delivery")
CONCURRENCY = 64


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str
    reason: str | None = None
    error: str | None = None
    retry_in: float | None = None
    provider_id: str | None = None


def backoff(attempt: int, base: float) -> float:
    """Seconds before retry number `attempt` (1-based): base × 1, 4, 16, 64…, at most 10 minutes."""
    return float(min(base * 4 ** (attempt - 1), 600))


@dataclass(frozen=True)
class Claimed:
    """What sending needs of a delivery this job has claimed."""

    id: int
    notification_id: int
    recipient_id: str
    channel: str
    category: str
    attempts: int
    created_at: datetime


def claim(session: Session, ids: Sequence[int]) -> list[Claimed]:
    """Mark queued deliveries as being sent; returns those this job now owns."""
    if not ids:
        return []
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_(list(ids)), col(Delivery.status) == "queued")
        .values(status="sending", updated_at=now())
        .returning(*(col(getattr(Delivery, f.name)) for f in fields(Claimed)))
    )
    return sorted((Claimed(*row) for row in result), key=lambda d: d.id)


def deliver(rt: Runtime, delivery_ids: Sequence[int]) -> None:
    """Send one batch of deliveries (all of one channel) and record the outcomes."""
    with rt.db.session() as session:
        rows = claim(session, delivery_ids)
    if not rows:
        return
    with rt.db.session() as session:
        notifications = _by_id(session, Notification, {d.notification_id for d in rows})
        categories = {
            c.key: c
            for c in session.exec(
                select(Category).where(col(Category.key).in_({d.category for d in rows}))
            )
        }
        recipients = {
            r.id: r
            for r in bulk.read(
                session, Recipient, col(Recipient.id).in_({d.recipient_id for d in rows})
            )
        }
    at = now()
    composer = Composer()
    messages: list[Message] = []
    outcomes: list[Outcome] = []
    copies: dict[int, dict[str, Any]] = {}
    for d in rows:
        notification = notifications.get(d.notification_id)
        category = categories.get(d.category)
        recipient = recipients.get(d.recipient_id)
        if notification is None or category is None:
            outcomes.append(Outcome(d.id, "failed", error="notification or category is gone"))
            continue
        expires = aware(notification.expires_at)
        if expires is not None and at >= expires:
            outcomes.append(Outcome(d.id, "suppressed", "expired"))
            continue
        field = ADDRESS_FIELDS.get(d.channel)
        address = getattr(recipient, field, None) if recipient and field else None
        if recipient is None or (field is not None and not address):
            outcomes.append(Outcome(d.id, "suppressed", "no_address"))
            continue
        # Signing links costs; only email headers and templates that mention them need them.
        links = partial(page_links, rt, recipient, category)
        try:
            copy = composer.compose(notification, category, d.channel, recipient, links)
        except RenderError as exc:
            outcomes.append(Outcome(d.id, "failed", error=str(exc)))
            continue
        copies[d.id] = {
            "title": copy.title,
            "body": copy.body,
            "action_url": copy.action_url,
            "locale": copy.locale,
        }
        messages.append(
            Message(
                delivery_id=d.id,
                notification_id=d.notification_id,
                recipient_id=d.recipient_id,
                category=d.category,
                channel=d.channel,
                address=tuple(address) if isinstance(address, list) else address,
                locale=copy.locale,
                title=copy.title,
                body=copy.body,
                html=copy.html,
                action_url=copy.action_url,
                data=notification.data or {},
                unsubscribe_url=links().get("unsubscribe") if d.channel == "email" else None,
                created_at=iso(d.created_at),
            )
        )
    attempts = {d.id: d.attempts for d in rows}
    messages, waiting = throttle(rt, messages, at)
    outcomes += waiting
    if messages:
        outcomes += rt.run(_send_all(rt, messages, attempts))
    _record(rt, outcomes, copies, attempts, queue=_queue(notifications))
    _observe(rows, notifications, outcomes)
    for o in outcomes:
        if o.status == "failed":
            log.warning("delivery failed", extra={"delivery_id": o.delivery_id, "error": o.error})
    log.info(
        "delivered batch",
        extra={
            "channel": rows[0].channel if rows else None,
            "deliveries": len(rows),
            "notification_ids": sorted(notifications),
        },
    )


def throttle(
    rt: Runtime, messages: list[Message], at: datetime
) -> tuple[list[Message], list[Outcome]]:
    """Take what the channel's shared rate limit allows now; the rest waits for the next window."""
    if not messages:
        return messages, []
    limit = rt.settings.rate_limit(messages[0].channel)
    if limit is None:
        return messages, []
    count, per = limit
    granted = rt.counters.take(messages[0].channel, count, per, len(messages), at)
    next_window = per - at.timestamp() % per + 0.01
    waiting = [
        Outcome(m.delivery_id, "throttled", retry_in=next_window) for m in messages[granted:]
    ]
    return messages[:granted], waiting


def _by_id(session: Session, model: type[Notification], ids: set[int]) -> dict[int, Notification]:
    return {n.id: n for n in session.exec(select(model).where(col(model.id).in_(ids))) if n.id}


def _queue(notifications: dict[int, Notification]) -> str:
    return next(iter(notifications.values())).queue if notifications else "normal"


async def _send_all(
    rt: Runtime, messages: list[Message], attempts: dict[int, int]
) -> list[Outcome]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(message: Message) -> Outcome:
        async with gate:
            channel = rt.channels.get(message.channel)
            try:
                sent: Sent = await channel.send(message)
            except TransientError as exc:
                tries = attempts.get(message.delivery_id, 0) + 1
                if tries >= rt.settings.delivery_max_attempts:
                    return Outcome(
                        message.delivery_id, "failed", error=f"{exc} (after {tries} attempts)"
                    )
                wait = max(exc.retry_after or 0, backoff(tries, rt.settings.retry_backoff_base))
                return Outcome(message.delivery_id, "retry", error=str(exc), retry_in=wait)
            except PermanentError as exc:
                return Outcome(message.delivery_id, "failed", error=str(exc))
            except Exception as exc:  # a channel bug must not lose the batch
                log.exception(
                    "channel %s crashed on delivery %s", message.channel, message.delivery_id
                )
                return Outcome(message.delivery_id, "failed", error=f"{type(exc).__name__}: {exc}")
            status = "delivered" if sent.delivered else "sent"
            return Outcome(message.delivery_id, status, provider_id=sent.provider_id)

    return list(await asyncio.gather(*(one(m) for m in messages)))


def _record(
    rt: Runtime,
    outcomes: list[Outcome],
    copies: dict[int, dict[str, Any]],
    attempts: dict[int, int],
    *,
    queue: str,
) -> None:
    at = now()
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    retries: dict[float, list[int]] = {}
    for o in outcomes:
        row: dict[str, Any] = {
            "id": o.delivery_id,
            "updated_at": at,
            **copies.get(o.delivery_id, {}),
        }
        tries = attempts.get(o.delivery_id, 0) + 1
        if o.status == "throttled":  # over the rate limit: waits its turn, not an attempt
            assert o.retry_in is not None
            row.update(status="queued", due_at=at + timedelta(seconds=o.retry_in))
            retries.setdefault(o.retry_in, []).append(o.delivery_id)
        elif o.status == "retry":
            assert o.retry_in is not None
            row.update(
                status="queued",
                attempts=tries,
                error=o.error,
                due_at=at + timedelta(seconds=o.retry_in),
            )
            events.append(
                {"delivery_id": o.delivery_id, "status": "retrying", "detail": o.error, "at": at}
            )
            retries.setdefault(o.retry_in, []).append(o.delivery_id)
        else:
            row.update(
                status=o.status,
                reason=o.reason,
                error=o.error,
                attempts=tries,
                due_at=None,
                provider_id=o.provider_id,
            )
            if o.status == "delivered":
                # A delivered message was also sent: keep both steps in its history.
                events.append({"delivery_id": o.delivery_id, "status": "sent", "at": at})
            events.append(
                {
                    "delivery_id": o.delivery_id,
                    "status": o.status,
                    "reason": o.reason,
                    "detail": o.error,
                    "at": at,
                }
            )
        updates.append(row)
    with rt.db.session() as session:
        bulk.update_by_id(session, Delivery, updates)
        bulk.add_events(session, events)
    for wait, ids in retries.items():
        rt.dispatch.deliver(ids, queue, delay_ms=int(wait * 1000))


def _observe(
    rows: list[Claimed], notifications: dict[int, Notification], outcomes: list[Outcome]
) -> None:
    by_id = {d.id: d for d in rows}
    final = [o for o in outcomes if o.status not in ("retry", "throttled")]
    metrics.outcomes((by_id[o.delivery_id].channel, o.status, o.reason) for o in final)
    done = now()
    for o in final:
        if o.status in ("sent", "delivered"):
            d = by_id[o.delivery_id]
            accepted = aware(notifications[d.notification_id].created_at)
            if accepted is not None:
                metrics.latency(d.channel, accepted, done)


def fail_exhausted(rt: Runtime, delivery_ids: Sequence[int], error: str) -> None:
    """A deliver job that exhausted its retries: its unsent deliveries end `failed`, with why."""
    at = now()
    with rt.db.session() as session:
        result = session.execute(
            update(Delivery)
            .where(
                col(Delivery.id).in_(list(delivery_ids)),
                col(Delivery.status).in_(("queued", "sending")),
            )
            .values(status="failed", error=error, updated_at=at)
            .returning(col(Delivery.id))
        )
        failed = [row[0] for row in result]
        bulk.add_events(
            session,
            [{"delivery_id": i, "status": "failed", "detail": error, "at": at} for i in failed],
        )
