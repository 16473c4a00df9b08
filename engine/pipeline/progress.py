"""A notification's planning progress: chunks finished, and the notification `planned`
when the last one is (planned, failed for good, or cancelled before it was planned)."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col

from engine.store import turns
from engine.store.models import Notification
from engine.store.states import NotificationStatus
from engine.timeutil import now


def count_finished(session: Session, notification_id: int, chunks: int = 1) -> None:
    """Count `chunks` more of the notification's chunks finished, in `session`'s
    transaction; once all are, it is `planned`, and a campaign step gives its campaign's
    planning turn to the next step (`engine.store.turns`)."""
    if chunks <= 0:
        return
    session.execute(
        update(Notification)
        .where(col(Notification.id) == notification_id)
        .values(chunks_done=Notification.chunks_done + chunks, updated_at=now())
    )
    planned = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == notification_id,
            col(Notification.chunks_done) >= col(Notification.chunks_total),
        )
        .values(status=NotificationStatus.PLANNED)
    )
    if getattr(planned, "rowcount", 0) == 1:
        turns.give_back(session, notification_id)
