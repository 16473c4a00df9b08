"""Accepting notifications (with idempotency), handing them to the workers, and reading
back their status and receipts."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NotRequired, Protocol, TypedDict

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine import metrics
from engine.catalog import recipients
from engine.catalog.segments import audience_filter
from engine.errors import IdempotencyMismatch, Invalid, NotFound, UnknownRecipients
from engine.pipeline import content, winner
from engine.pipeline.templates import DataError
from engine.pipeline.variants import Variant
from engine.schemas.notifications import (
    EveryoneAudience,
    NotificationIn,
    SegmentAudience,
    TopicAudience,
    VariantIn,
)
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Category, Delivery, DeliveryEvent, Notification, Recipient
from engine.store.states import (
    REPORTED,
    UNSETTLED,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import aware, now

if TYPE_CHECKING:  # campaigns import this module
    from engine.schemas.campaigns import CampaignIn

log = logging.getLogger("tidings.accept")


@dataclass(frozen=True)
class Accepted:
    """A notification stored: its id, audience size, queue, whether it is due now, and
    whether this answers a repeated idempotency key (`replayed`)."""

    id: int
    recipients: int
    queue: str
    due: bool
    replayed: bool = False


def request_hash(spec: NotificationIn | CampaignIn) -> str:
    """A fingerprint of what was asked (a notification or a campaign, its idempotency key
    left out), to tell a retry from a different request."""
    canonical = spec.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def queue_for(category: Category, audience: dict[str, Any], settings: Settings) -> str:
    """Transactional and critical work has its own queue; broadcasts go on `bulk`."""
    if category.priority == "critical" or category.kind == "transactional":
        return "critical"
    ids = audience.get("ids")
    if ids is None or len(ids) > settings.plan_chunk_size:
        return "bulk"
    return "normal"


def validate(session: Session, spec: NotificationIn, *, field_prefix: str = "") -> Category:
    """Checks that need the database: the category, its channels, the recipients."""
    category = session.get(Category, spec.category)
    if category is None:
        raise Invalid(f"no category {spec.category!r}", field=f"{field_prefix}category")
    for index, channel in enumerate(spec.channels or ()):
        if channel not in category.channels:
            raise Invalid(
                f"category {category.key!r} is not sent by {channel}",
                field=f"{field_prefix}channels.{index}",
            )
    if spec.content is None and not category.templates and not _all_have_copy(spec):
        raise Invalid(
            f"category {category.key!r} has no templates: send content",
            field=f"{field_prefix}content",
        )
    if spec.content is None and not spec.variants:
        # what would fail for every recipient fails now, as a 422
        try:
            content.check(category, spec.channels or category.channels, spec.data)
        except DataError as exc:
            raise Invalid(exc.message, field=f"{field_prefix}{exc.field}") from None
    for index, given in enumerate(spec.variants or ()):
        # what the variant leaves out comes from the notification's copy: check both
        variant = Variant.of(_stored_variant(given))
        merged = {**spec.data, **(variant.data or {})}
        where = f"{field_prefix}variants.{index}."
        channels = spec.channels or category.channels
        stored = spec.content.model_dump(exclude_none=True) if spec.content else None
        try:
            content.check(category, channels, merged, variant=variant, content=stored)
        except DataError as exc:
            # the variant's own template is at fault, else the data it gives the category's
            field = exc.template if exc.overridden else exc.field
            raise Invalid(exc.message, field=f"{where}{field}") from None
    if isinstance(spec.to, list):
        ids = spec.recipient_ids
        known: set[str] = set()
        for start in range(0, len(ids), 5000):
            part = ids[start : start + 5000]
            known.update(session.exec(select(Recipient.id).where(col(Recipient.id).in_(part))))
        unknown = [rid for rid in ids if rid not in known]
        if unknown:
            raise UnknownRecipients(unknown, field=f"{field_prefix}to")
    return category


def _stored_variant(variant: VariantIn) -> dict[str, Any]:
    """A variant as stored: its `content` keeps only the fields it gives, so the others
    come from the notification's copy."""
    stored = variant.model_dump(exclude_none=True)
    if variant.content is not None:
        stored["content"] = variant.content.model_dump(exclude_none=True, exclude_unset=True)
    return stored


def _all_have_copy(spec: NotificationIn) -> bool:
    """Every variant brings its own content or templates."""
    return bool(spec.variants) and all(
        v.content is not None or v.templates for v in spec.variants or ()
    )


def audience_size(
    session: Session, audience: dict[str, Any], at: datetime, settings: Settings
) -> int:
    """How many recipients the audience selects (`segments.audience_filter`) as of `at`."""
    if "ids" in audience:  # `validate` checked that each one exists
        return len(audience["ids"])
    where = audience_filter(audience, at, settings)
    return session.exec(select(func.count()).select_from(Recipient).where(*where)).one()


def audience_of(spec: NotificationIn) -> dict[str, Any]:
    """The audience as stored: `{"ids": [...]}` (sorted), `{"segment": {...}}`,
    `{"topic": "..."}` or `{"all": true}`."""
    if isinstance(spec.to, SegmentAudience):
        return {"segment": spec.to.segment.document()}
    if isinstance(spec.to, EveryoneAudience):
        return {"all": True}
    if isinstance(spec.to, TopicAudience):
        return {"topic": spec.to.topic}
    return {"ids": sorted(spec.recipient_ids)}


def accept(
    session: Session, spec: NotificationIn, *, settings: Settings, field_prefix: str = ""
) -> Accepted:
    """Store a notification, or return the first answer for a repeated idempotency key.

    The same key with a different request is a 422; two concurrent requests with one
    key create one notification (the unique index decides, the loser reads it back).
    Recipients given as objects in `to` are created or updated first, in the same
    transaction: a refused notification leaves them as they were.
    """
    digest = request_hash(spec)
    if spec.idempotency_key and (found := _by_key(session, spec.idempotency_key)) is not None:
        return _replay(found, digest, field_prefix)
    if spec.upserts:  # in this transaction: they exist exactly when the notification does
        recipients.upsert_many(session, [(entry.id, entry) for entry in spec.upserts])
        session.flush()
    category = validate(session, spec, field_prefix=field_prefix)
    audience = audience_of(spec)
    at = now()
    row = Notification(
        category=category.key,
        audience=audience,
        data=spec.data,
        content=spec.content.model_dump(exclude_none=True) if spec.content else None,
        channels=list(spec.channels) if spec.channels else None,
        variants=[_stored_variant(v) for v in spec.variants] if spec.variants else None,
        send_at=spec.send_time,
        best_time=spec.send_at == "best",
        ab_test=spec.ab_test.model_dump() if spec.ab_test else None,
        ab_decide_at=(spec.send_time or at) + timedelta(seconds=spec.ab_test.wait)
        if spec.ab_test
        else None,
        latest_at=spec.latest_at,
        expires_at=spec.expires_at,
        collapse_key=spec.collapse_key,
        idempotency_key=spec.idempotency_key,
        request_hash=digest,
        queue=queue_for(category, audience, settings),
        recipients=audience_size(session, audience, spec.send_time or at, settings),
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    session.flush()  # a concurrent twin with the same key makes this an IntegrityError
    assert row.id is not None
    due = spec.send_time is None or spec.send_time <= at
    return Accepted(row.id, row.recipients, row.queue, due)


def accept_all(
    database: Database, specs: Sequence[NotificationIn], *, settings: Settings, batch: bool
) -> list[Accepted]:
    """Accept notifications in one transaction: all of them, or none.

    Two requests racing with one idempotency key: the loser's insert fails on the unique
    index, its transaction rolls back, and the retry finds the winner's notification.
    """
    for attempt in (1, 2):
        try:
            with database.session() as session:
                return [
                    accept(
                        session,
                        spec,
                        settings=settings,
                        field_prefix=f"notifications.{i}." if batch else "",
                    )
                    for i, spec in enumerate(specs)
                ]
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _by_key(session: Session, key: str) -> Notification | None:
    return session.exec(
        select(Notification).where(col(Notification.idempotency_key) == key)
    ).first()


def _replay(found: Notification, digest: str, field_prefix: str) -> Accepted:
    if found.request_hash != digest:
        raise IdempotencyMismatch(
            "this Idempotency-Key was used for a different request",
            field=f"{field_prefix}idempotency_key",
        )
    assert found.id is not None
    return Accepted(found.id, found.recipients, found.queue, due=False, replayed=True)


def mark_enqueued(session: Session, notification_ids: list[int], at: datetime) -> None:
    """Note when notifications were handed to the broker (`enqueued_at`)."""
    for row in session.exec(select(Notification).where(col(Notification.id).in_(notification_ids))):
        row.enqueued_at = at
        session.add(row)


def notification_state(row: Notification, counts: dict[str, int]) -> NotificationStatus:
    """`cancelled` once cancelled; `done` once planned with nothing scheduled, queued or
    being sent; else the planning stage (`accepted`, `planning`, `planned`)."""
    if row.cancelled_at is not None or row.status == NotificationStatus.CANCELLED:
        return NotificationStatus.CANCELLED
    if row.status == NotificationStatus.PLANNED and not any(counts.get(s) for s in UNSETTLED):
        return NotificationStatus.DONE
    return row.status


class Planner(Protocol):
    """What hands a notification to the workers: `engine.worker.broker.Dispatcher`."""

    def plan(self, notification_id: int, queue: str) -> None: ...


# When bookkeeping runs: now (the default), or later, like after an HTTP answer has gone.
Later = Callable[[Callable[[], None]], None]


def _at_once(work: Callable[[], None]) -> None:
    work()


def submit(
    database: Database,
    specs: Sequence[NotificationIn],
    *,
    settings: Settings,
    planner: Planner,
    batch: bool = False,
    later: Later = _at_once,
) -> list[Accepted]:
    """Accept notifications and hand the due ones to the workers: the one way in for the
    API (`POST /v1/notifications`, `/batch`) and the CLI (`tidings send`).

    Validates, stores all of `specs` in one transaction or none (`accept_all`, which
    answers a repeated idempotency key with its first answer), counts the new ones, and
    enqueues the plan job of each one due now. If the broker does not answer they stay
    accepted in SQL and the scheduler enqueues them. Noting when they were enqueued is
    bookkeeping for that recovery, run by `later`, giving way to the writes that deliver.

    Returns one `Accepted` per spec, in order. Raises `Invalid` (or `UnknownRecipients`,
    `IdempotencyMismatch`) naming the field, prefixed `notifications.<i>.` in a batch.
    """
    accepted = accept_all(database, specs, settings=settings, batch=batch)
    fresh = [a for a in accepted if not a.replayed]
    for item in fresh:
        metrics.NOTIFICATIONS.labels(item.queue).inc()
    due = [a for a in fresh if a.due]
    if not due:
        return accepted
    try:
        for item in due:
            planner.plan(item.id, item.queue)
    except Exception as exc:
        log.warning(
            "could not enqueue %d notifications now (%s); the scheduler will", len(due), exc
        )
        return accepted
    later(functools.partial(_note_enqueued, database, [a.id for a in due], now()))
    return accepted


def _note_enqueued(database: Database, notification_ids: list[int], at: datetime) -> None:
    try:
        with database.session(background=True) as session:
            mark_enqueued(session, notification_ids, at)
    except Exception as exc:
        log.warning(
            "could not note notifications as enqueued (%s); the scheduler will enqueue them "
            "again, and planning twice changes nothing",
            exc,
        )


class EventView(TypedDict):
    """One step of a delivery's history as it is shown: `reason` and `detail` only when
    the step has them."""

    status: EventStatus
    at: datetime | None
    reason: NotRequired[Reason]
    detail: NotRequired[str]


@dataclass(frozen=True)
class DeliveryView:
    """A delivery with its event history, oldest first. Times are UTC."""

    id: int
    notification_id: int
    recipient: str
    channel: str
    category: str
    status: DeliveryStatus
    reason: Reason | None
    due_at: datetime | None
    error: str | None
    attempts: int
    provider_id: str | None
    read_at: datetime | None
    created_at: datetime | None
    events: list[EventView]
    # Its variant of an A/B test, if any.
    variant: str | None


@dataclass(frozen=True)
class NotificationView:
    """A notification, its state (`notification_state`), counts per delivery status, and
    one page of its deliveries; `next` is the last delivery id shown when more follow."""

    id: int
    category: str
    status: NotificationStatus
    recipients: int
    # A time, or "best" (each recipient's best hour, by `latest_at` at the latest).
    send_at: datetime | Literal["best"] | None
    expires_at: datetime | None
    collapse_key: str | None
    created_at: datetime | None
    cancelled_at: datetime | None
    counts: dict[str, int]
    deliveries: list[DeliveryView]
    next: int | None
    # Its A/B test slice (`engine.pipeline.winner.view`), if any.
    ab_test: dict[str, Any] | None = None
    latest_at: datetime | None = None


def status(
    session: Session, notification_id: int, *, after: int | None, limit: int
) -> NotificationView:
    """A notification with counts per delivery status and one page of deliveries (`limit`
    of them, after the delivery id `after`). Raises `NotFound` for an unknown id."""
    row = session.get(Notification, notification_id)
    if row is None:
        raise NotFound(f"no notification {notification_id}", field="id")
    counts: dict[str, int] = dict.fromkeys(REPORTED, 0)
    for state, count in session.exec(
        select(Delivery.status, func.count())
        .where(col(Delivery.notification_id) == notification_id)
        .group_by(col(Delivery.status))
    ):
        counts[state] = count
    query = select(Delivery).where(col(Delivery.notification_id) == notification_id)
    if after is not None:
        query = query.where(col(Delivery.id) > after)
    page = list(session.exec(query.order_by(col(Delivery.id)).limit(limit + 1)))
    more = len(page) > limit
    page = page[:limit]
    assert row.id is not None
    return NotificationView(
        id=row.id,
        category=row.category,
        status=notification_state(row, counts),
        recipients=row.recipients,
        send_at="best" if row.best_time else aware(row.send_at),
        expires_at=aware(row.expires_at),
        collapse_key=row.collapse_key,
        created_at=aware(row.created_at),
        cancelled_at=aware(row.cancelled_at),
        counts=counts,
        deliveries=delivery_views(session, page),
        next=page[-1].id if more and page else None,
        ab_test=winner.view(row),
        latest_at=aware(row.latest_at),
    )


def delivery_views(session: Session, rows: list[Delivery]) -> list[DeliveryView]:
    """Deliveries with their event history, loaded in one query."""
    events: dict[int, list[EventView]] = defaultdict(list)
    ids = [d.id for d in rows]
    if ids:
        for event in session.exec(
            select(DeliveryEvent)
            .where(col(DeliveryEvent.delivery_id).in_(ids))
            .order_by(col(DeliveryEvent.id))
        ):
            entry: EventView = {"status": event.status, "at": aware(event.at)}
            if event.reason:
                entry["reason"] = event.reason
            if event.detail:
                entry["detail"] = event.detail
            history = events[event.delivery_id]
            if not history and event.status == EventStatus.DELIVERED:
                # An inbox copy stored as it was planned went out and arrived at once:
                # one row tells both steps.
                history.append({"status": EventStatus.QUEUED, "at": entry["at"]})
            history.append(entry)
    return [
        DeliveryView(
            id=d.id or 0,
            notification_id=d.notification_id,
            recipient=d.recipient_id,
            channel=d.channel,
            category=d.category,
            status=d.status,
            reason=d.reason,
            due_at=aware(d.due_at),
            variant=d.variant,
            error=d.error,
            attempts=d.attempts,
            provider_id=d.provider_id,
            read_at=aware(d.read_at),
            created_at=aware(d.created_at),
            events=events.get(d.id or 0, []),
        )
        for d in rows
    ]
