"""Engagement rates per category, channel, campaign or variant over a time range: what was
sent, delivered, opened, clicked and converted, what was suppressed (and why) or failed,
and how recipients rated it; and the same outcomes counted per hour or day.

Both `GET /v1/stats` and the ops console's data panel read their figures here.

An unsubscribe counts against the one message whose unsubscribe link was used (the
`Unsubscribe` row names its delivery), as Braze and Knock count it; an unsubscribe made
elsewhere (the API, the preference center, a link minted without a message) is counted
against no message.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import case, exists, func
from sqlalchemy import select as sa_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from engine.store.models import Campaign, Delivery, Feedback, Notification, Unsubscribe
from engine.store.states import (
    ARRIVED,
    CLICKED_THROUGH,
    REACHED,
    SEEN,
    UNSETTLED,
    DeliveryStatus,
)

RATINGS = ("up", "meh", "down")
GROUPS: dict[str, Any] = {
    "category": Delivery.category,
    "channel": Delivery.channel,
    "variant": Delivery.variant,
    "campaign": Notification.campaign_id,
}
Bucket = Literal["hour", "day"]
BUCKETS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# The figures a time series counts per bucket.
OUTCOMES = ("sent", "delivered", "failed", "suppressed")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _grouped(query: Any, by: str) -> Any:
    """`query` over deliveries, joined to their notification when grouping by campaign."""
    query = query.select_from(Delivery)
    if by == "campaign":
        return query.join(Notification, col(Notification.id) == col(Delivery.notification_id))
    return query


def _label(value: Any) -> Any:
    return str(value) if value is not None and not isinstance(value, str) else value


def rates(
    session: Session,
    *,
    by: str,
    since: datetime,
    until: datetime,
    category: str | None = None,
    campaign: int | None = None,
    notification: int | None = None,
) -> list[dict[str, Any]]:
    """One row per group (`by`: category, channel, campaign or variant) of deliveries
    created in [`since`, `until`), largest first, of one `category`, `campaign` or
    `notification` when given.

    Each row: counts (`deliveries`, `sent` = reached the provider or beyond, `delivered`,
    `opened`, `clicked`, `converted`, `suppressed` with `suppressed_by_reason`, `failed`,
    `scheduled`), `feedback` counts of `up`/`meh`/`down`, `unsubscribed` (reached
    deliveries whose own unsubscribe link was used to unsubscribe), `complained` (reached
    deliveries rated 👎 or unsubscribed from through their own link, each delivery
    counted once however it complained), and rates from 0 to 1 over `sent`
    (None when nothing was sent): open, click, conversion, unsubscribe, complaint
    (`complained` / `sent`) and `feedback_rates` per rating. By campaign, each row has
    the campaign's id (`campaign`) and its `campaign_name`.
    """
    key = col(GROUPS[by])
    window = [col(Delivery.created_at) >= since, col(Delivery.created_at) < until]
    if category is not None:
        window.append(col(Delivery.category) == category)
    if notification is not None:
        window.append(col(Delivery.notification_id) == notification)
    if campaign is not None:
        steps = select(Notification.id).where(col(Notification.campaign_id) == campaign)
        window.append(col(Delivery.notification_id).in_(steps))
    opened = (col(Delivery.read_at).is_not(None)) | col(Delivery.status).in_(SEEN)
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    reasons: dict[Any, dict[str, int]] = defaultdict(dict)
    query = _grouped(
        sa_select(
            key,
            col(Delivery.status),
            col(Delivery.reason),
            func.count(),
            func.sum(case((opened, 1), else_=0)),
        ),
        by,
    )
    query = query.where(*window).group_by(key, col(Delivery.status), col(Delivery.reason))
    for group, status, reason, total, seen in session.execute(query):
        row = counts[group]
        row["deliveries"] += total
        # Statuses by their own key: `clicked` the status is not `clicked` the figure.
        row[f"status_{status}"] += total
        row["reached"] += total if status in REACHED else 0
        row["delivered"] += total if status in ARRIVED else 0
        row["opened"] += int(seen or 0)
        row["clicked"] += total if status in CLICKED_THROUGH else 0
        if status == DeliveryStatus.SUPPRESSED:
            why = reason or "unknown"
            reasons[group][why] = reasons[group].get(why, 0) + total
    ratings = _grouped(select(key, Feedback.rating, func.count()), by).join(
        Feedback, col(Feedback.delivery_id) == col(Delivery.id)
    )
    ratings = ratings.where(*window, col(Delivery.status).in_(REACHED)).group_by(
        key, col(Feedback.rating)
    )
    for group, rating, total in session.exec(ratings):
        counts[group][f"feedback_{rating}"] += total
    left = _grouped(select(key, func.count()), by)
    left = left.where(*window, col(Delivery.status).in_(REACHED), _left_through()).group_by(key)
    for group, total in session.exec(left):
        counts[group]["unsubscribed"] += total
    for group, total in session.exec(_complaints(key, by, window)):
        counts[group]["complained"] += total
    names: dict[Any, str | None] = {}
    if by == "campaign":
        ids = [g for g in counts if g is not None]
        names = dict(
            session.exec(select(Campaign.id, Campaign.name).where(col(Campaign.id).in_(ids))).all()
        )
    out = []
    for group, row in counts.items():
        reached = row["reached"]
        out.append(
            {
                by: _label(group),
                **({"campaign_name": names.get(group)} if by == "campaign" else {}),
                "deliveries": row["deliveries"],
                "sent": reached,
                "delivered": row["delivered"],
                "opened": row["opened"],
                "clicked": row["clicked"],
                "converted": row["status_converted"],
                "suppressed": row["status_suppressed"],
                "suppressed_by_reason": dict(sorted(reasons[group].items())),
                "failed": row["status_failed"],
                "scheduled": row["status_scheduled"],
                "feedback": {r: row[f"feedback_{r}"] for r in RATINGS},
                "unsubscribed": row["unsubscribed"],
                "complained": row["complained"],
                "open_rate": _rate(row["opened"], reached),
                "click_rate": _rate(row["clicked"], reached),
                "conversion_rate": _rate(row["status_converted"], reached),
                "unsubscribe_rate": _rate(row["unsubscribed"], reached),
                "complaint_rate": _rate(row["complained"], reached),
                "feedback_rates": {r: _rate(row[f"feedback_{r}"], reached) for r in RATINGS},
            }
        )
    return sorted(out, key=lambda r: (-r["deliveries"], str(r[by])))


def _left_through() -> ColumnElement[bool]:
    """Whether the delivery's own unsubscribe link was used to unsubscribe (once or more:
    the delivery counts once)."""
    return exists().where(col(Unsubscribe.delivery_id) == col(Delivery.id))


def _complaints(key: Any, by: str, window: list[Any]) -> Any:
    """Per group, the reached deliveries in `window` that drew a complaint: a 👎 on the
    delivery, or an unsubscribe through its own link."""
    rated_down = exists().where(
        col(Feedback.delivery_id) == col(Delivery.id), col(Feedback.rating) == "down"
    )
    query = _grouped(select(key, func.count()), by)
    return query.where(
        *window, col(Delivery.status).in_(REACHED), rated_down | _left_through()
    ).group_by(key)


def _bucket_of(session: Session, bucket: Bucket) -> ColumnElement[Any]:
    """The SQL for the start of a delivery's hour or day, as `YYYY-MM-DD HH:00` text (UTC)."""
    if session.get_bind().dialect.name == "postgresql":
        utc = func.timezone("UTC", col(Delivery.created_at))
        return func.to_char(func.date_trunc(bucket, utc), "YYYY-MM-DD HH24:00")
    pattern = "%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d 00:00"
    return func.strftime(pattern, col(Delivery.created_at))


def floor(at: datetime, bucket: Bucket) -> datetime:
    """The start of the UTC hour or day holding `at`."""
    at = at.astimezone(UTC)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def series(
    session: Session, *, since: datetime, until: datetime, bucket: Bucket
) -> list[dict[str, Any]]:
    """Deliveries created in [`since`, `until`) counted per UTC hour or day: one row per
    bucket, empty ones included, oldest first.

    Each row: `start` (aware datetime) and the counts `sent`, `delivered`, `failed`,
    `suppressed`. Raises ValueError for a range of more than 1,000 buckets.
    """
    step = BUCKETS[bucket]
    first = floor(since, bucket)
    if (until - first) / step > 1000:
        raise ValueError(f"more than 1000 {bucket}s")
    start = _bucket_of(session, bucket)
    query = (
        select(start, Delivery.status, func.count())
        .where(col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
        .group_by(start, col(Delivery.status))
    )
    found: dict[datetime, dict[str, int]] = defaultdict(lambda: dict.fromkeys(OUTCOMES, 0))
    for label, status, total in session.exec(query):
        at = datetime.strptime(label, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        row = found[at]
        if status in REACHED:
            row["sent"] += total
        if status in ARRIVED:
            row["delivered"] += total
        if status in (DeliveryStatus.FAILED, DeliveryStatus.SUPPRESSED):
            row[status] += total
    rows = []
    at = first
    while at < until:
        rows.append({"start": at, **found.get(at, dict.fromkeys(OUTCOMES, 0))})
        at += step
    return rows


FUNNEL = ("deliveries", "sent", "delivered", "opened", "clicked", "converted")


def funnel(counts: dict[str, int]) -> dict[str, int]:
    """From counts per delivery status, how many deliveries reached each step: planned
    (`deliveries`), `sent`, `delivered`, `opened`, `clicked`, `converted`; each step
    counts the deliveries that went on past it."""
    return {
        "deliveries": sum(counts.values()),
        "sent": sum(counts.get(s, 0) for s in REACHED),
        "delivered": sum(counts.get(s, 0) for s in ARRIVED),
        "opened": sum(counts.get(s, 0) for s in SEEN),
        "clicked": sum(counts.get(s, 0) for s in CLICKED_THROUGH),
        "converted": counts.get(DeliveryStatus.CONVERTED, 0),
    }


def figures(counts: dict[str, int]) -> dict[str, int]:
    """`funnel(counts)` plus the deliveries still `pending` (scheduled, queued or being
    sent), `suppressed` and `failed`: what the message log shows per notification."""
    return {
        **funnel(counts),
        "pending": sum(counts.get(s, 0) for s in UNSETTLED),
        "suppressed": counts.get(DeliveryStatus.SUPPRESSED, 0),
        "failed": counts.get(DeliveryStatus.FAILED, 0),
    }
