"""Planning `send_at: "best"`: each recipient's due time from their own engagement
history, read in bulk for a chunk (`engine.pipeline.besttime` decides).

A chunk reads the engagement events of its recipients' deliveries in one query. The
fallback hours (the category's, everyone's) are learned from the latest engagements and
kept for a few minutes per process, so a broadcast of many chunks asks once.
"""

from __future__ import annotations

import time as clock
from collections import defaultdict
from datetime import datetime

from sqlmodel import Session, col, select

from engine.pipeline import besttime
from engine.store.models import Delivery, DeliveryEvent, Recipient
from engine.store.states import EventStatus
from engine.timeutil import aware

ENGAGED = (EventStatus.OPENED, EventStatus.READ, EventStatus.CLICKED, EventStatus.CONVERTED)
# How many of the latest engagements teach a category's or everyone's best hour.
SAMPLE = 5000
FALLBACK_TTL = 300.0
_fallbacks: dict[str | None, tuple[float, int]] = {}


def due_times(
    session: Session,
    *,
    category: str,
    zones: dict[str, str],
    lo: str,
    hi: str,
    at: datetime,
    latest: datetime | None,
) -> dict[str, datetime | None]:
    """For each recipient (id → time zone) of a chunk (ids `lo`…`hi`): when their copy
    should go (None: now)."""
    history: dict[str, list[datetime]] = defaultdict(list)
    for rid, seen in session.exec(
        select(Delivery.recipient_id, DeliveryEvent.at)
        .join(DeliveryEvent, col(DeliveryEvent.delivery_id) == col(Delivery.id))
        .where(
            col(Delivery.recipient_id) >= lo,
            col(Delivery.recipient_id) <= hi,
            col(DeliveryEvent.status).in_(ENGAGED),
            col(DeliveryEvent.at) >= at - besttime.HISTORY,
        )
    ):
        history[rid].append(_aware(seen))
    fallback: int | None = None
    out: dict[str, datetime | None] = {}
    for rid, zone in zones.items():
        hour = besttime.best_hour(besttime.weights(history.get(rid, ()), zone, at))
        if hour is None:
            if fallback is None:
                fallback = fallback_hour(session, category, at)
            hour = fallback
        out[rid] = besttime.due_at(hour, zone, at, latest)
    return out


def fallback_hour(session: Session, category: str, at: datetime) -> int:
    """The category's best local hour from its latest engagements, else everyone's, else
    `besttime.DEFAULT_HOUR`."""
    for key in (category, None):
        cached = _fallbacks.get(key)
        if cached is not None and clock.monotonic() - cached[0] < FALLBACK_TTL:
            hour: int | None = cached[1]
        else:
            hour = _learn(session, key, at)
            if hour is not None:
                _fallbacks[key] = (clock.monotonic(), hour)
        if hour is not None:
            return hour
    return besttime.DEFAULT_HOUR


def _learn(session: Session, category: str | None, at: datetime) -> int | None:
    query = (
        select(DeliveryEvent.at, Recipient.timezone)
        .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
        .join(Recipient, col(Recipient.id) == col(Delivery.recipient_id))
        .where(col(DeliveryEvent.status).in_(ENGAGED))
        .order_by(col(DeliveryEvent.id).desc())
        .limit(SAMPLE)
    )
    if category is not None:
        query = query.where(col(Delivery.category) == category)
    by_hour = [0.0] * 24
    for seen, zone in session.exec(query):
        weights = besttime.weights([_aware(seen)], zone or "UTC", at)
        by_hour = [a + b for a, b in zip(by_hour, weights, strict=True)]
    return besttime.best_hour(by_hour)


def _aware(value: datetime) -> datetime:
    stamp = aware(value)
    assert stamp is not None
    return stamp
