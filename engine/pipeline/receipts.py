"""Receipts after sending: engagement events, feedback, a recipient's deliveries and inbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from engine.errors import NotDelivered, NotFound
from engine.pipeline import rhythm
from engine.pipeline.accept import DeliveryView, delivery_views
from engine.store import bulk, outbox
from engine.store.models import Delivery, Feedback, Notification
from engine.store.states import (
    ARRIVED,
    PROGRESS,
    REACHED,
    SEEN,
    UNSENT,
    WENT_OUT,
    DeliveryStatus,
    Engagement,
    EventStatus,
    Reason,
)
from engine.timeutil import aware, format_duration, iso, now
from preferences import store


@dataclass(frozen=True)
class EventRecorded:
    """A delivery after an event: its status now, and the ids of its pending copies on
    other channels that the event cancelled (`suppressed/seen_elsewhere`)."""

    id: int
    status: DeliveryStatus
    cancelled: list[int]


@dataclass(frozen=True)
class Cap:
    """At most `count` messages per `per` (a duration like '1h' or '7d')."""

    count: int
    per: str


@dataclass(frozen=True)
class FeedbackRecorded:
    """A rating kept, and the recipient's cap for the category if a 👎 tightened it."""

    delivery_id: int
    rating: str
    comment: str | None
    cap_lowered_to: Cap | None


def record_event(session: Session, delivery_id: int, kind: Engagement) -> EventRecorded:
    """Record opened/read/clicked/converted; a seen notification cancels its pending
    deliveries on the other channels (`seen_elsewhere`).

    Raises `NotFound` for an unknown delivery and `NotDelivered` (naming the status) for
    one that never went out (scheduled, suppressed, failed).
    """
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", field="id")
    if row.status not in WENT_OUT:
        raise NotDelivered(
            f"delivery {delivery_id} is {row.status}: it never reached its recipient",
            field="id",
        )
    at = now()
    reached = DeliveryStatus(kind)
    if PROGRESS.index(reached) > PROGRESS.index(row.status):
        row.status = reached
    if kind in (Engagement.OPENED, Engagement.READ, Engagement.CLICKED) and row.read_at is None:
        row.read_at = at
    row.updated_at = at
    session.add(row)
    events: list[bulk.EventRow] = [
        {"delivery_id": delivery_id, "status": EventStatus(kind), "at": at}
    ]
    cancelled: list[int] = []
    if reached in SEEN:
        cancelled = [
            r[0]
            for r in session.execute(
                update(Delivery)
                .where(
                    col(Delivery.notification_id) == row.notification_id,
                    col(Delivery.recipient_id) == row.recipient_id,
                    col(Delivery.id) != delivery_id,
                    col(Delivery.status).in_(UNSENT),
                )
                .values(
                    status=DeliveryStatus.SUPPRESSED,
                    reason=Reason.SEEN_ELSEWHERE,
                    due_at=None,
                    updated_at=at,
                )
                .returning(col(Delivery.id))
            )
        ]
        events += [
            {
                "delivery_id": i,
                "status": EventStatus.SUPPRESSED,
                "reason": Reason.SEEN_ELSEWHERE,
                "at": at,
            }
            for i in cancelled
        ]
    if reached in rhythm.ENGAGED:
        reason = rhythm.stopped_by([reached])
        stopped = _stop_campaign(session, row, reason, at)
        events += [
            {"delivery_id": i, "status": EventStatus.SUPPRESSED, "reason": reason, "at": at}
            for i in stopped
        ]
    bulk.add_events(session, events)
    return EventRecorded(id=delivery_id, status=row.status, cancelled=cancelled)


def _stop_campaign(session: Session, row: Delivery, reason: Reason, at: datetime) -> list[int]:
    """A click or conversion on a campaign step ends the recipient's waiting deliveries of
    its other steps (`suppressed/clicked_earlier` or `converted_earlier`, as `reason`);
    later steps leave them out when planned. Returns the ids ended."""
    campaign_id = session.exec(
        select(Notification.campaign_id).where(col(Notification.id) == row.notification_id)
    ).first()
    if campaign_id is None:
        return []
    steps = select(Notification.id).where(
        col(Notification.campaign_id) == campaign_id, col(Notification.id) != row.notification_id
    )
    return [
        r[0]
        for r in session.execute(
            update(Delivery)
            .where(
                col(Delivery.notification_id).in_(steps),
                col(Delivery.recipient_id) == row.recipient_id,
                col(Delivery.status).in_(UNSENT),
            )
            .values(status=DeliveryStatus.SUPPRESSED, reason=reason, due_at=None, updated_at=at)
            .returning(col(Delivery.id))
        )
    ]


def record_feedback(
    session: Session,
    delivery_id: int,
    rating: str,
    comment: str | None,
    *,
    recipient_id: str | None = None,
) -> FeedbackRecorded:
    """Record 👍 / 😕 / 👎 on a delivery; rating again replaces the earlier rating.

    Raises `NotFound` for an unknown delivery (or another recipient's), and
    `NotDelivered` (naming the status) for one that never reached its recipient: a suppressed,
    failed, scheduled or queued message cannot have been liked or disliked.
    """
    row = session.get(Delivery, delivery_id)
    if row is None or (recipient_id is not None and row.recipient_id != recipient_id):
        raise NotFound(f"no delivery {delivery_id}", field="id")
    if row.status not in REACHED:
        raise NotDelivered(
            f"delivery {delivery_id} is {row.status}, not delivered: only a delivered "
            "message can be rated",
            field="id",
        )
    # Insert, or else lock and replace the earlier rating: two ratings at once take turns.
    rated = {
        "delivery_id": delivery_id,
        "recipient_id": row.recipient_id,
        "category": row.category,
        "variant": row.variant,
        "rating": rating,
        "comment": comment,
        "created_at": now(),
    }
    first = bulk.insert_ignore(
        session, Feedback, [rated], conflict=("delivery_id",), returning=("id",)
    )
    before = None
    if not first:
        found = session.exec(
            select(Feedback).where(col(Feedback.delivery_id) == delivery_id).with_for_update()
        ).one()
        before = found.rating
        for name, value in rated.items():
            setattr(found, name, value)
        session.add(found)
    outbox.record(
        session,
        outbox.FEEDBACK_CREATED,
        recipient_id=row.recipient_id,
        delivery_id=delivery_id,
        data={"rating": rating, "comment": comment, "category": row.category},
    )
    lowered = None
    if rating == "down" and before != "down":
        lowered = store.lower_cap(session, row.recipient_id, row.category)
    return FeedbackRecorded(
        delivery_id=delivery_id,
        rating=rating,
        comment=comment,
        cap_lowered_to=Cap(lowered["count"], format_duration(lowered["per"])) if lowered else None,
    )


@dataclass(frozen=True)
class DeliveryList:
    """One page of deliveries; `next` is the last id shown when more follow."""

    items: list[DeliveryView]
    next: int | None


def recipient_deliveries(
    session: Session, recipient_id: str, *, before: int | None, limit: int
) -> DeliveryList:
    """A recipient's receipts, newest first, `limit` of them before the delivery id
    `before`."""
    query = select(Delivery).where(col(Delivery.recipient_id) == recipient_id)
    if before is not None:
        query = query.where(col(Delivery.id) < before)
    page = list(session.exec(query.order_by(col(Delivery.id).desc()).limit(limit + 1)))
    more = len(page) > limit
    page = page[:limit]
    return DeliveryList(
        items=delivery_views(session, page), next=page[-1].id if more and page else None
    )


def mark_all_read(session: Session, recipient_id: str) -> int:
    """Mark every unread in-app message of a recipient read, each as opening it would
    (cancelling its still-pending copies on other channels); returns how many."""
    unread = session.exec(
        select(Delivery.id).where(
            col(Delivery.recipient_id) == recipient_id,
            col(Delivery.channel) == "inapp",
            col(Delivery.status).in_(ARRIVED),
            col(Delivery.read_at).is_(None),
        )
    ).all()
    for delivery_id in unread:
        if delivery_id is not None:
            record_event(session, delivery_id, Engagement.READ)
    return len(unread)


@dataclass(frozen=True)
class InboxItem:
    """An in-app message as its recipient sees it: read or not, and their rating if any
    (`up`, `meh`, `down`). `created_at` is UTC."""

    delivery_id: int
    notification_id: int
    category: str
    title: str | None
    body: str | None
    action_url: str | None
    read: bool
    feedback: str | None
    created_at: datetime | None


@dataclass(frozen=True)
class Inbox:
    """One page of a recipient's inbox and how many messages are unread in all; `next`
    is the last delivery id shown when older ones follow."""

    unread: int
    items: list[InboxItem]
    next: int | None


def inbox(session: Session, recipient_id: str, *, before: int | None, limit: int) -> Inbox:
    """A recipient's in-app messages, newest first (`limit` of them before the delivery
    id `before`), with the unread count."""
    visible = (
        col(Delivery.recipient_id) == recipient_id,
        col(Delivery.channel) == "inapp",
        col(Delivery.status).in_(ARRIVED),
    )
    unread = session.exec(
        select(func.count()).select_from(Delivery).where(*visible, col(Delivery.read_at).is_(None))
    ).one()
    query = select(Delivery).where(*visible)
    if before is not None:
        query = query.where(col(Delivery.id) < before)
    page = list(session.exec(query.order_by(col(Delivery.id).desc()).limit(limit + 1)))
    more = len(page) > limit
    page = page[:limit]
    ratings = {
        f.delivery_id: f.rating
        for f in session.exec(
            select(Feedback).where(col(Feedback.delivery_id).in_([d.id for d in page]))
        )
    }
    return Inbox(
        unread=unread,
        items=[
            InboxItem(
                delivery_id=d.id or 0,
                notification_id=d.notification_id,
                category=d.category,
                title=d.title,
                body=d.body,
                action_url=d.action_url,
                read=d.read_at is not None,
                feedback=ratings.get(d.id or 0),
                created_at=aware(d.created_at),
            )
            for d in page
        ],
        next=page[-1].id if more and page else None,
    )


def recipient_feedback(session: Session, recipient_id: str, *, limit: int) -> list[dict[str, Any]]:
    """A recipient's latest 👍 / 😕 / 👎, newest first: at most `limit` of
    `{delivery_id, category, variant, rating, comment, created_at}` (ISO 8601)."""
    rows = session.exec(
        select(Feedback)
        .where(col(Feedback.recipient_id) == recipient_id)
        .order_by(col(Feedback.id).desc())
        .limit(limit)
    )
    return [
        {
            "delivery_id": str(f.delivery_id),
            "category": f.category,
            "variant": f.variant,
            "rating": f.rating,
            "comment": f.comment,
            "created_at": iso(f.created_at),
        }
        for f in rows
    ]
