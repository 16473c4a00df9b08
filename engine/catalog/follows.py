"""Follows: recipients following topics (a card, a game, a brand), so a notification sent
`to: {"topic": …}` reaches the people who asked to hear about it.

A follow is a row per (recipient, topic); following twice is one follow, and erasing a
recipient removes every follow they had.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from engine.errors import NotFound, UnknownRecipients
from engine.store import bulk
from engine.store.models import Follow, Recipient
from engine.timeutil import iso, now


def exists(session: Session, recipient_id: str) -> bool:
    """Whether the recipient exists."""
    return session.get(Recipient, recipient_id) is not None


def _require(session: Session, recipient_id: str) -> None:
    if not exists(session, recipient_id):
        raise NotFound(f"no recipient {recipient_id!r}", field="id")


def follow(session: Session, recipient_id: str, topic: str) -> Follow:
    """Make a recipient follow `topic`; following again keeps the first follow.

    Raises `NotFound` (field `id`) for an unknown recipient.
    """
    _require(session, recipient_id)
    bulk.insert_ignore(
        session,
        Follow,
        [{"recipient_id": recipient_id, "topic": topic, "created_at": now()}],
        conflict=("recipient_id", "topic"),
    )
    row = session.get(Follow, (recipient_id, topic))
    assert row is not None
    return row


def unfollow(session: Session, recipient_id: str, topic: str) -> bool:
    """Stop following `topic`; False when the recipient did not follow it.

    Raises `NotFound` (field `id`) for an unknown recipient.
    """
    _require(session, recipient_id)
    done = session.execute(
        delete(Follow).where(col(Follow.recipient_id) == recipient_id, col(Follow.topic) == topic)
    )
    return bool(getattr(done, "rowcount", 0))


def follow_many(session: Session, pairs: Sequence[tuple[str, str]]) -> int:
    """Follow many (recipient id, topic) pairs at once: all of them, or none.

    Returns how many follows are new. Raises `UnknownRecipients` (field `follows`) naming
    every recipient that does not exist.
    """
    ids = sorted({rid for rid, _ in pairs})
    known = set(session.exec(select(Recipient.id).where(col(Recipient.id).in_(ids))))
    if unknown := [rid for rid in ids if rid not in known]:
        raise UnknownRecipients(unknown, field="follows")
    at = now()
    rows = [
        {"recipient_id": rid, "topic": topic, "created_at": at}
        for rid, topic in dict.fromkeys(pairs)
    ]
    written = bulk.insert_ignore(
        session, Follow, rows, conflict=("recipient_id", "topic"), returning=("recipient_id",)
    )
    return len(written)


def topics_of(session: Session, recipient_id: str) -> list[Follow]:
    """A recipient's follows, by topic."""
    return list(
        session.exec(
            select(Follow)
            .where(col(Follow.recipient_id) == recipient_id)
            .order_by(col(Follow.topic))
        )
    )


def public(row: Follow) -> dict[str, Any]:
    """A follow as the API shows it: `{"topic", "created_at"}`."""
    return {"topic": row.topic, "created_at": iso(row.created_at)}


def erase(session: Session, recipient_id: str) -> None:
    """Forget every topic a recipient followed (part of erasing them)."""
    session.execute(delete(Follow).where(col(Follow.recipient_id) == recipient_id))
