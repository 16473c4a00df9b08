"""The event outbox: events registered endpoints want, written with the change itself.

A delivery's receipt and the event telling an endpoint of it commit together or not at
all, so an endpoint never hears of a send that was rolled back nor misses one that
committed. Only the types some endpoint asked for are written: with no endpoint
registered a broadcast writes nothing more than before. The drain job
(`engine.pipeline.events`) reads the outbox in bulk, off the planning path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlmodel import Session, select

from engine.store.models import EventEndpoint, EventOutbox
from engine.store.states import EventStatus
from engine.timeutil import now

# A delivery reaching one of these statuses is told as `delivery.<status>`.
DELIVERY_TYPES = {
    status: f"delivery.{status}"
    for status in (
        EventStatus.SENT,
        EventStatus.DELIVERED,
        EventStatus.FAILED,
        EventStatus.SUPPRESSED,
        EventStatus.READ,
        EventStatus.CLICKED,
        EventStatus.CONVERTED,
    )
}
FEEDBACK_CREATED = "feedback.created"
UNSUBSCRIBED = "recipient.unsubscribed"
EVENT_TYPES = (*DELIVERY_TYPES.values(), FEEDBACK_CREATED, UNSUBSCRIBED)


def wanted(session: Session) -> set[str]:
    """The event types at least one registered endpoint asked for (paused ones too:
    their events wait for them)."""
    found: set[str] = set()
    for types in session.exec(select(EventEndpoint.types)):
        found.update(types)
    return found


def wanted_statuses(session: Session) -> set[EventStatus]:
    """The delivery statuses some registered endpoint wants to hear of."""
    types = wanted(session)
    return {status for status, kind in DELIVERY_TYPES.items() if kind in types}


def delivery_events(session: Session, events: Sequence[Mapping[str, Any]], writer: Any) -> None:
    """Outbox rows for delivery events (`delivery_id`, `status`, `reason`, `detail`, `at`)
    whose type an endpoint wants, written with `writer(session, rows)` (a bulk insert)."""
    if not events:
        return
    types = wanted(session)
    if not types:
        return
    rows = []
    for event in events:
        kind = DELIVERY_TYPES.get(event["status"])
        if kind is None or kind not in types:
            continue
        rows.append(
            {
                "type": kind,
                "delivery_id": event["delivery_id"],
                "recipient_id": None,
                "reason": event.get("reason"),
                "detail": event.get("detail"),
                "data": None,
                "at": event["at"],
            }
        )
    if rows:
        writer(session, rows)


def record(
    session: Session,
    kind: str,
    *,
    recipient_id: str | None = None,
    delivery_id: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """One outbox row of type `kind`, if an endpoint wants it."""
    if kind not in wanted(session):
        return
    session.add(
        EventOutbox(
            type=kind, recipient_id=recipient_id, delivery_id=delivery_id, data=data, at=now()
        )
    )


def types_of(requested: Iterable[str] | None) -> list[str]:
    """The types an endpoint gets: those requested, in the order of `EVENT_TYPES`;
    every type when none was named."""
    chosen = set(requested or EVENT_TYPES)
    return [t for t in EVENT_TYPES if t in chosen]
