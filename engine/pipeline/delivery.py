"""Delivering: claim a batch of queued deliveries, render them, send them through their
channel concurrently, and record every outcome in bulk.

A delivery is claimed (`queued` → `sending`) in one conditional UPDATE, so two jobs
for the same ids never both send. The claim is a lease (`engine.store.leases`): a worker that
died holding it is noticed in seconds. A re-send after a crash carries the same ids, so
the webhook-id and Message-ID stay the same and the receiver can drop the copy; a batch
that was sent is never sent again because its receipts could not be written at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from channels.base import ADDRESS_FIELDS, Message, Sent
from channels.errors import PermanentError, TransientError
from engine import metrics
from engine.pipeline import redecide, variants
from engine.pipeline.content import Composer
from engine.pipeline.planning import page_links
from engine.pipeline.templates import RenderError
from engine.settings import Settings
from engine.store import bulk
from engine.store.leases import delivery_lease
from engine.store.models import Category, Delivery, Digest, Notification, Recipient
from engine.store.outages import is_outage, ride_out
from engine.store.states import IN_FLIGHT, DeliveryStatus, EventStatus, Reason
from engine.timeutil import aware, iso, now
from engine.worker.runtime import Runtime

log = logging.getLogger("tidings.delivery")
CONCURRENCY = 64
DIED = "its worker stopped while sending it"
# A batch's deliveries were mostly created together: their `created_at` is written once.
_stamp = functools.lru_cache(maxsize=1024)(iso)


# Outcomes that leave a delivery queued for another try: a transient error (`retry`, an
# attempt) or the channel's rate limit (`throttled`, not an attempt).
Again = Literal["retry", "throttled"]


@dataclass(frozen=True)
class Outcome:
    """What became of one delivery in this job: the status it ends in, or `Again`."""

    delivery_id: int
    status: DeliveryStatus | Again
    reason: Reason | None = None
    error: str | None = None
    retry_in: float | None = None
    due_at: datetime | None = None  # held again (quiet hours, a pause) until then
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
    variant: str | None = None
    digest_id: int | None = None


def claim(
    session: Session,
    ids: Sequence[int],
    *,
    holder: str,
    settings: Settings,
    gone: Callable[[Iterable[str | None]], set[str]] | None = None,
) -> list[Claimed]:
    """Lease queued deliveries to `holder` (`queued` → `sending`); returns those it now owns.

    With `gone` (which holders died), deliveries whose lease ran out while their holder
    is gone are taken back too (a redelivered message), each counting an attempt.
    """
    if not ids:
        return []
    at = now()
    lease = {"claimed_by": holder, "lease_until": delivery_lease(settings, at), "updated_at": at}
    returning = tuple(col(getattr(Delivery, f.name)) for f in fields(Claimed))
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_(list(ids)), col(Delivery.status) == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SENDING, **lease)
        .returning(*returning)
    )
    rows = [Claimed(*row) for row in result]
    rest = set(ids) - {d.id for d in rows}
    if rest and gone is not None:
        expired = and_(
            col(Delivery.id).in_(rest),
            col(Delivery.status) == DeliveryStatus.SENDING,
            col(Delivery.lease_until) < at,
        )
        stale = session.exec(select(Delivery.claimed_by).where(expired).distinct()).all()
        dead = gone(stale)
        if dead:
            result = session.execute(
                update(Delivery)
                .where(expired, col(Delivery.claimed_by).in_(dead))
                .values(attempts=Delivery.attempts + 1, error=DIED, **lease)
                .returning(*returning)
            )
            rows += [Claimed(*row) for row in result]
    return sorted(rows, key=lambda d: d.id)


def deliver(rt: Runtime, delivery_ids: Sequence[int]) -> None:
    """Send one batch of deliveries (all of one channel) and record the outcomes.

    One delivery that cannot be rendered or sent ends `failed` on its own; the rest of
    the batch goes on. If the job itself fails before sending (its data cannot be read),
    the claimed deliveries go back to `queued` for the job's retry, each attempt counted
    unless the cause was an outage, so a batch that keeps failing ends `failed`.
    """
    holder = rt.liveness.start()
    with rt.db.session() as session:
        rows = claim(session, delivery_ids, holder=holder, settings=rt.settings, gone=rt.judge.gone)
    if not rows:
        return
    sendable, exhausted = _within_attempts(rt, rows)
    try:
        # Nothing is sent before the data is read and the rate limit taken: an outage
        # there is waited out with the deliveries still leased to this job.
        notifications, outcomes, copies = ride_out(
            lambda: _send(rt, sendable), wait=rt.settings.outage_wait, what="a deliver job"
        )
    except BaseException as exc:
        release(rt, sendable, exc)
        raise
    outcomes += exhausted
    attempts = {d.id: d.attempts for d in rows}
    _record(rt, outcomes, copies, attempts, queue=_queue(notifications))
    _observe(rows, notifications, outcomes)
    for o in outcomes:
        if o.status == DeliveryStatus.FAILED:
            log.warning("delivery failed", extra={"delivery_id": o.delivery_id, "error": o.error})
    log.info(
        "delivered batch",
        extra={
            "channel": rows[0].channel if rows else None,
            "deliveries": len(rows),
            "notification_ids": sorted(notifications),
        },
    )


def _within_attempts(rt: Runtime, rows: list[Claimed]) -> tuple[list[Claimed], list[Outcome]]:
    """Split off deliveries taken back from dead workers too many times: they end `failed`."""
    limit = rt.settings.delivery_max_attempts
    over = [
        Outcome(d.id, DeliveryStatus.FAILED, error=f"{DIED} ({d.attempts} times)")
        for d in rows
        if d.attempts >= limit
    ]
    return [d for d in rows if d.attempts < limit], over


def _send(
    rt: Runtime, rows: list[Claimed]
) -> tuple[dict[int, Notification], list[Outcome], dict[int, dict[str, Any]]]:
    """Render and send claimed deliveries; returns their notifications, outcomes and copies."""
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
        carried = {d.digest_id for d in rows if d.digest_id is not None}
        digests = (
            {g.id: g for g in bulk.read(session, Digest, col(Digest.id).in_(carried))}
            if carried
            else {}
        )
        # Each is decided anew just before sending: the recipient's preferences now win.
        held = {
            d.id: redecide.Held(d.id, d.notification_id, d.recipient_id, d.channel, d.category)
            for d in rows
        }
        situation = redecide.load(
            session,
            rt.settings,
            list(held.values()),
            notifications=notifications,
            categories=categories,
            recipients=recipients,
        )
    at = now()
    composer = Composer()
    messages: list[Message] = []
    outcomes: list[Outcome] = []
    copies: dict[int, dict[str, Any]] = {}
    for d in rows:
        try:
            fate = redecide.decide(situation, [held[d.id]], at)[d.id]
            # Suppressed, or held again by a pause or quiet hours.
            if fate.status != DeliveryStatus.QUEUED:
                outcomes.append(Outcome(d.id, fate.status, fate.reason, due_at=fate.due_at))
                continue
            ready = _message(
                rt,
                composer,
                d,
                notifications.get(d.notification_id),
                categories.get(d.category),
                recipients.get(d.recipient_id),
                at,
                digests.get(d.digest_id) if d.digest_id is not None else None,
            )
        except RenderError as exc:
            ready = Outcome(d.id, DeliveryStatus.FAILED, error=str(exc))
        except Exception as exc:  # one delivery's bug must not hold up the batch
            log.exception("preparing delivery %s failed", d.id)
            ready = Outcome(d.id, DeliveryStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        if isinstance(ready, Outcome):
            outcomes.append(ready)
            continue
        messages.append(ready)
        copies[d.id] = {
            "title": ready.title,
            "body": ready.body,
            "action_url": ready.action_url,
            "locale": ready.locale,
        }
    messages, waiting = throttle(rt, messages, at)
    outcomes += waiting
    if messages:
        attempts = {d.id: d.attempts for d in rows}
        outcomes += rt.run(_send_all(rt, messages, attempts))
    return notifications, outcomes, copies


def _message(
    rt: Runtime,
    composer: Composer,
    d: Claimed,
    notification: Notification | None,
    category: Category | None,
    recipient: Recipient | None,
    at: datetime,
    digest: Digest | None = None,
) -> Message | Outcome:
    """The message to send for one delivery, or the outcome that ends it unsent; a
    delivery that carries a digest (`engine.pipeline.digests`) sends the digest's copy."""
    if notification is None or category is None:
        return Outcome(d.id, DeliveryStatus.FAILED, error="notification or category is gone")
    expires = aware(notification.expires_at)
    if expires is not None and at >= expires:
        return Outcome(d.id, DeliveryStatus.SUPPRESSED, Reason.EXPIRED)
    field = ADDRESS_FIELDS.get(d.channel)
    address = getattr(recipient, field, None) if recipient and field else None
    if recipient is None or (field is not None and not address):
        return Outcome(d.id, DeliveryStatus.SUPPRESSED, Reason.NO_ADDRESS)
    # Signing links costs; only email headers and templates that mention them need them.
    links = partial(page_links, rt, recipient, category, d.id)
    if digest is not None:
        if digest.title is None:
            return Outcome(
                d.id, DeliveryStatus.FAILED, error="the digest template failed to render"
            )
        return Message(
            delivery_id=d.id,
            notification_id=d.notification_id,
            recipient_id=d.recipient_id,
            category=d.category,
            channel=d.channel,
            address=tuple(address) if isinstance(address, list) else address,
            locale=digest.locale or recipient.locale or "en",
            title=digest.title,
            body=digest.body or "",
            html=digest.html,
            action_url=digest.action_url,
            data={"digest": {"id": str(digest.id), "items": digest.items}},
            unsubscribe_url=links().get("unsubscribe") if d.channel == "email" else None,
            created_at=_stamp(d.created_at),
        )
    variant = variants.named(notification, d.variant)
    copy = composer.compose(notification, category, d.channel, recipient, links, variant)
    return Message(
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
        created_at=_stamp(d.created_at),
    )


def release(rt: Runtime, rows: Sequence[Claimed], error: BaseException) -> None:
    """Give claimed deliveries back after the job failed before sending them.

    They return to `queued` for the job's retry; the attempt counts unless the cause was
    an outage, and a delivery out of attempts ends `failed` with the error.
    """
    detail = f"{type(error).__name__}: {error}"[:2000]
    counted = not is_outage(error)
    at = now()
    ended: list[int] = []
    try:
        with rt.db.session() as session:
            for d in rows:
                tries = d.attempts + 1 if counted else d.attempts
                gone = tries >= rt.settings.delivery_max_attempts
                values: dict[str, Any] = {
                    "status": DeliveryStatus.FAILED if gone else DeliveryStatus.QUEUED,
                    "attempts": tries,
                    "error": detail,
                    "updated_at": at,
                }
                session.execute(
                    update(Delivery)
                    .where(col(Delivery.id) == d.id, col(Delivery.status) == DeliveryStatus.SENDING)
                    .values(**values)
                )
                if gone:
                    ended.append(d.id)
            bulk.add_events(
                session,
                [
                    {"delivery_id": i, "status": EventStatus.FAILED, "detail": detail, "at": at}
                    for i in ended
                ],
            )
    except Exception:
        log.exception("could not give back %d claimed deliveries", len(rows))


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
                        message.delivery_id,
                        DeliveryStatus.FAILED,
                        error=f"{exc} (after {tries} attempts)",
                    )
                wait = max(exc.retry_after or 0, backoff(tries, rt.settings.retry_backoff_base))
                return Outcome(message.delivery_id, "retry", error=str(exc), retry_in=wait)
            except PermanentError as exc:
                return Outcome(message.delivery_id, DeliveryStatus.FAILED, error=str(exc))
            except Exception as exc:  # a channel bug must not lose the batch
                log.exception(
                    "channel %s crashed on delivery %s", message.channel, message.delivery_id
                )
                return Outcome(
                    message.delivery_id,
                    DeliveryStatus.FAILED,
                    error=f"{type(exc).__name__}: {exc}",
                )
            status = DeliveryStatus.DELIVERED if sent.delivered else DeliveryStatus.SENT
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
    events: list[bulk.EventRow] = []
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
            row.update(status=DeliveryStatus.QUEUED, due_at=at + timedelta(seconds=o.retry_in))
            retries.setdefault(o.retry_in, []).append(o.delivery_id)
        elif o.status == DeliveryStatus.SCHEDULED:  # held again until a pause or quiet hours end
            row.update(
                status=DeliveryStatus.SCHEDULED,
                reason=o.reason,
                due_at=o.due_at,
                claimed_by=None,
                lease_until=None,
            )
            events.append(
                {
                    "delivery_id": o.delivery_id,
                    "status": EventStatus.SCHEDULED,
                    "reason": o.reason,
                    "at": at,
                }
            )
        elif o.status == "retry":
            assert o.retry_in is not None
            row.update(
                status=DeliveryStatus.QUEUED,
                attempts=tries,
                error=o.error,
                due_at=at + timedelta(seconds=o.retry_in),
            )
            events.append(
                {
                    "delivery_id": o.delivery_id,
                    "status": EventStatus.RETRYING,
                    "detail": o.error,
                    "at": at,
                }
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
            if o.status == DeliveryStatus.DELIVERED:
                # A delivered message was also sent: keep both steps in its history.
                events.append({"delivery_id": o.delivery_id, "status": EventStatus.SENT, "at": at})
            events.append(
                {
                    "delivery_id": o.delivery_id,
                    "status": EventStatus(o.status),
                    "reason": o.reason,
                    "detail": o.error,
                    "at": at,
                }
            )
        updates.append(row)

    def write() -> None:
        with rt.db.session() as session:
            bulk.update_by_id(session, Delivery, updates)
            bulk.add_events(session, events)

    # The messages are sent: a database that does not answer now is waited out with the
    # outcomes kept here, never answered by sending them again.
    ride_out(write, wait=rt.settings.outage_wait, what="a batch's receipts")
    try:
        for wait, ids in retries.items():
            rt.dispatch.deliver(ids, queue, delay_ms=int(wait * 1000))
    except Exception as exc:  # the scheduler re-enqueues queued work once Redis is back
        if not is_outage(exc):
            raise
        log.warning("could not hand retries to the broker: %s", exc)


def _observe(
    rows: list[Claimed], notifications: dict[int, Notification], outcomes: list[Outcome]
) -> None:
    by_id = {d.id: d for d in rows}
    final = [
        o for o in outcomes if o.status not in ("retry", "throttled", DeliveryStatus.SCHEDULED)
    ]
    metrics.outcomes((by_id[o.delivery_id].channel, o.status, o.reason) for o in final)
    done = now()
    accepted = {i: aware(n.created_at) for i, n in notifications.items()}
    sent: dict[str, list[datetime]] = defaultdict(list)
    for o in final:
        if o.status in (DeliveryStatus.SENT, DeliveryStatus.DELIVERED):
            d = by_id[o.delivery_id]
            if (at := accepted.get(d.notification_id)) is not None:
                sent[d.channel].append(at)
    for channel, times in sent.items():
        metrics.latencies(channel, times, done)


def fail_exhausted(rt: Runtime, delivery_ids: Sequence[int], error: str) -> None:
    """A deliver job that exhausted its retries: its unsent deliveries end `failed`, with why."""
    at = now()
    with rt.db.session() as session:
        result = session.execute(
            update(Delivery)
            .where(
                col(Delivery.id).in_(list(delivery_ids)),
                col(Delivery.status).in_(IN_FLIGHT),
            )
            .values(status=DeliveryStatus.FAILED, error=error, updated_at=at)
            .returning(col(Delivery.id))
        )
        failed = [row[0] for row in result]
        bulk.add_events(
            session,
            [
                {"delivery_id": i, "status": EventStatus.FAILED, "detail": error, "at": at}
                for i in failed
            ],
        )
