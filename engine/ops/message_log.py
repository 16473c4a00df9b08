"""The message log: what was sent, to whom, and how it ended, read for the API and console.

Notifications are listed newest first with their delivery counts (one grouped query per
page); a delivery is shown with its whole event history; recipients are listed in id
order by the same segment conditions a broadcast selects its audience with, so "who is a
sleeping whale" has one answer everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, not_, or_
from sqlmodel import Session, col, select

from engine.catalog.segments import segment_clause
from engine.errors import NotFound
from engine.pipeline.accept import DeliveryView, delivery_views, notification_state
from engine.settings import Settings
from engine.store.models import Delivery, Notification, Recipient
from engine.store.states import UNSETTLED, DeliveryStatus, NotificationStatus
from engine.timeutil import iso, now

# Every count a notification shows, zero when none of its deliveries is in it.
COUNTED = (
    DeliveryStatus.SCHEDULED,
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.FAILED,
)


def _state_filter(state: NotificationStatus) -> list[ColumnElement[bool]]:
    """The SQL conditions for a notification `status` filter."""
    if state == NotificationStatus.CANCELLED:
        return [or_(col(Notification.cancelled_at).is_not(None), col(Notification.status) == state)]
    live = col(Notification.cancelled_at).is_(None)
    if state not in (NotificationStatus.PLANNED, NotificationStatus.DONE):
        return [live, col(Notification.status) == state]
    busy = exists().where(
        col(Delivery.notification_id) == col(Notification.id), col(Delivery.status).in_(UNSETTLED)
    )
    planned = col(Notification.status) == NotificationStatus.PLANNED
    return [live, planned, busy if state == NotificationStatus.PLANNED else not_(busy)]


def counts_of(session: Session, notification_ids: list[int]) -> dict[int, dict[str, int]]:
    """Deliveries per status for each notification, in one grouped query."""
    out: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
    if notification_ids:
        for nid, state, count in session.exec(
            select(Delivery.notification_id, Delivery.status, func.count())
            .where(col(Delivery.notification_id).in_(notification_ids))
            .group_by(col(Delivery.notification_id), col(Delivery.status))
        ):
            out[nid][state] = count
    return out


def audience(audience: dict[str, Any]) -> dict[str, Any]:
    """A notification's audience without its id list: its type and size or conditions."""
    shown: dict[str, Any] = {"type": "all", "recipients": None, "segment": None, "topic": None}
    if "ids" in audience:
        shown.update(type="ids", recipients=len(audience["ids"]))
    elif "segment" in audience:
        shown.update(type="segment", segment=audience["segment"])
    elif "topic" in audience:
        shown.update(type="topic", topic=audience["topic"])
    return shown


def notifications(
    session: Session,
    *,
    category: str | None = None,
    state: NotificationStatus | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    before: int | None = None,
    limit: int,
) -> dict[str, Any]:
    """One page of notifications, newest first, with their counts per delivery status;
    `next` is the `before` of the following page (None on the last)."""
    where: list[ColumnElement[bool]] = []
    if category is not None:
        where.append(col(Notification.category) == category)
    if state is not None:
        where += _state_filter(state)
    if created_after is not None:
        where.append(col(Notification.created_at) >= created_after)
    if created_before is not None:
        where.append(col(Notification.created_at) < created_before)
    if before is not None:
        where.append(col(Notification.id) < before)
    page = list(
        session.exec(
            select(Notification)
            .where(*where)
            .order_by(col(Notification.id).desc())
            .limit(limit + 1)
        )
    )
    more = len(page) > limit
    page = page[:limit]
    counts = counts_of(session, [n.id for n in page if n.id is not None])
    items = []
    for row in page:
        assert row.id is not None
        mine = counts[row.id]
        items.append(
            {
                "id": str(row.id),
                "category": row.category,
                "status": notification_state(row, mine),
                "audience": audience(row.audience),
                "recipients": row.recipients,
                "send_at": "best" if row.best_time else iso(row.send_at),
                "expires_at": iso(row.expires_at),
                "created_at": iso(row.created_at),
                "cancelled_at": iso(row.cancelled_at),
                "counts": dict(mine),
            }
        )
    return {"items": items, "next": str(page[-1].id) if more and page else None}


@dataclass(frozen=True)
class DeliveryDetail(DeliveryView):
    """A delivery with its history and what was sent: its copy and locale."""

    title: str | None
    body: str | None
    action_url: str | None
    locale: str | None


def delivery(session: Session, delivery_id: int) -> DeliveryDetail:
    """One delivery with its event history, error and copy; `NotFound` if there is none."""
    row = session.get(Delivery, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", field="id")
    (shown,) = delivery_views(session, [row])
    return DeliveryDetail(
        **vars(shown),
        title=row.title,
        body=row.body,
        action_url=row.action_url,
        locale=row.locale,
    )


def recipient_filter(
    settings: Settings,
    *,
    prefix: str | None = None,
    tier: str | None = None,
    activity: str | None = None,
    tag: str | None = None,
    at: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """The SQL conditions for listing recipients: an exact, case-sensitive id prefix and
    the segment conditions a broadcast uses (`engine.pipeline.segments`)."""
    where: list[ColumnElement[bool]] = []
    if prefix is not None:
        # substr, not LIKE: SQLite's LIKE ignores case, and "_" and "%" are wildcards.
        where.append(func.substr(col(Recipient.id), 1, len(prefix)) == prefix)
    segment: dict[str, list[str]] = {}
    if tier is not None:
        segment["tier"] = [tier]
    if activity is not None:
        segment["activity"] = [activity]
    if tag is not None:
        segment["tags_any"] = [tag]
    if segment:
        where.append(segment_clause(segment, at or now(), settings))
    return where


def recipients(
    session: Session,
    settings: Settings,
    *,
    where: list[ColumnElement[bool]],
    after: str | None,
    limit: int,
) -> tuple[list[Recipient], str | None]:
    """One page of recipients in id order matching `where`, and the next page's `after`."""
    query = select(Recipient).where(*where)
    if after is not None:
        query = query.where(col(Recipient.id) > after)
    page = list(session.exec(query.order_by(col(Recipient.id)).limit(limit + 1)))
    more = len(page) > limit
    page = page[:limit]
    return page, page[-1].id if more and page else None
