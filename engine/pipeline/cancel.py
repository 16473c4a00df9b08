"""Cancelling a notification: what has not gone out never will.

A cancel marks the notification, leaves the slices of its audience no job has claimed
unplanned, and ends its scheduled and queued deliveries `suppressed` with reason
`cancelled`; sent and delivered ones are history and stay as they are. Work already in a
worker's hands is the race: a delivery being sent (`sending`) or a slice being planned
(`planning`). The cancel waits for those to finish, then suppresses again whatever they
left queued, so that when it answers nothing of the notification is in flight. Past that
point every worker decides a delivery anew before sending it (`engine.pipeline.redecide`)
and sees the cancel, and planning refuses a cancelled notification, so nothing is sent
after the answer, even by a worker that died holding a delivery and is taken over later.

Cancelling again changes nothing and answers the same state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from engine.errors import NotFound
from engine.pipeline import progress
from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Delivery, Notification, PlanChunk
from engine.store.states import (
    UNSENT,
    ChunkStatus,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import aware, now

POLL = 0.05


def is_cancelled(notification: Notification) -> bool:
    """Whether a notification was cancelled: by itself (`cancelled_at`) or with its
    campaign (status `cancelled`)."""
    return (
        notification.cancelled_at is not None or notification.status == NotificationStatus.CANCELLED
    )


@dataclass(frozen=True)
class Cancelled:
    """What a cancel did: the deliveries and audience slices it stopped, and when the
    notification was cancelled (the first call's time on a repeat)."""

    notification_id: int
    cancelled_at: datetime
    deliveries: int
    chunks: int


def cancel(db: Database, notification_id: int, *, wait: float) -> Cancelled:
    """Cancel a notification; returns once nothing of it is being planned or sent, or
    after `wait` seconds (a worker holding a delivery longer died, and whoever takes its
    delivery over suppresses it).

    Raises `NotFound` for an unknown notification.
    """
    deadline = time.monotonic() + wait
    deliveries = chunks = 0
    while True:
        with db.session() as session:
            at, stopped, unplanned = _stop(session, notification_id)
            deliveries += stopped
            chunks += unplanned
            busy = _in_flight(session, notification_id)
        if not busy or time.monotonic() >= deadline:
            return Cancelled(notification_id, at, deliveries, chunks)
        time.sleep(POLL)


def _stop(session: Session, notification_id: int) -> tuple[datetime, int, int]:
    """One pass in one transaction: mark the notification, cancel its unclaimed slices,
    suppress its pending deliveries. Returns (cancelled_at, deliveries, slices)."""
    at = now()
    # The first write takes the notification's row lock (PostgreSQL) or the write turn
    # (SQLite): cutting the audience (`planning._cut`) checks the mark under the same lock.
    session.execute(
        update(Notification)
        .where(col(Notification.id) == notification_id, col(Notification.cancelled_at).is_(None))
        .values(cancelled_at=at, updated_at=at)
    )
    row = session.exec(select(Notification).where(col(Notification.id) == notification_id)).first()
    if row is None:
        raise NotFound(f"no notification {notification_id}", field="id")
    if row.chunks_total is None:  # not cut yet: there is nothing to plan
        row.chunks_total = 0
        row.status = NotificationStatus.PLANNED
        session.add(row)
    unplanned = session.execute(
        update(PlanChunk)
        .where(
            col(PlanChunk.notification_id) == notification_id,
            col(PlanChunk.status) == ChunkStatus.PENDING,
        )
        .values(status=ChunkStatus.CANCELLED, error="cancelled", updated_at=at)
    )
    slices = int(getattr(unplanned, "rowcount", 0) or 0)
    progress.count_finished(session, notification_id, slices)
    stopped = end_unsent(session, [notification_id], at)
    cancelled_at = aware(row.cancelled_at) or at
    return cancelled_at, len(stopped), slices


def end_unsent(session: Session, notification_ids: list[int], at: datetime) -> list[int]:
    """End every delivery of these notifications that has not gone out (held or queued)
    `suppressed/cancelled`, with its history event; returns their ids."""
    stopped = [
        r[0]
        for r in session.execute(
            update(Delivery)
            .where(
                col(Delivery.notification_id).in_(notification_ids),
                col(Delivery.status).in_(UNSENT),
            )
            .values(
                status=DeliveryStatus.SUPPRESSED,
                reason=Reason.CANCELLED,
                due_at=None,
                updated_at=at,
            )
            .returning(col(Delivery.id))
        )
    ]
    bulk.add_events(
        session,
        [
            {
                "delivery_id": i,
                "status": EventStatus.SUPPRESSED,
                "reason": Reason.CANCELLED,
                "at": at,
            }
            for i in stopped
        ],
    )
    return stopped


def drain(db: Database, notification_ids: list[int], *, deadline: float) -> int:
    """After these notifications were cancelled: wait until nothing of them is being sent
    or planned, or until `deadline` (`time.monotonic`), ending again what a worker left
    queued meanwhile `suppressed/cancelled`; returns how many deliveries that ended."""
    stopped = 0
    while True:
        with db.session() as session:
            stopped += len(end_unsent(session, notification_ids, now()))
            busy = _in_flight(session, notification_ids)
        if not busy or time.monotonic() >= deadline:
            return stopped
        time.sleep(POLL)


def _in_flight(session: Session, notification_ids: int | list[int]) -> int:
    """Deliveries being sent plus slices being planned, right now."""
    ids = [notification_ids] if isinstance(notification_ids, int) else notification_ids
    if not ids:
        return 0
    sending = session.exec(
        select(func.count())
        .select_from(Delivery)
        .where(
            col(Delivery.notification_id).in_(ids),
            col(Delivery.status) == DeliveryStatus.SENDING,
        )
    ).one()
    planning = session.exec(
        select(func.count())
        .select_from(PlanChunk)
        .where(
            col(PlanChunk.notification_id).in_(ids),
            col(PlanChunk.status) == ChunkStatus.PLANNING,
        )
    ).one()
    return int(sending) + int(planning)
