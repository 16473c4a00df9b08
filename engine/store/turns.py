"""Whose turn it is to plan a campaign: one step of a campaign plans at a time.

A step reads the other steps' deliveries to decide its own (`engine.pipeline.rhythm`):
who clicked on an earlier step, which earlier step is still waiting, which recipients a
later step already reached. Two steps planned at the same moment (a scheduler that was
down releases them together) would each miss what the other is writing. So the
campaign row names the step planning now (`Campaign.planning_step`), and a step's chunk
plans only while its step holds that turn; a chunk of another step waits and comes back.

The turn is taken by a compare-and-set on the campaign row (on PostgreSQL a second
taker waits for the first to commit and then finds the turn gone; on SQLite writes take
turns anyway), and given back in the transaction that finishes the step's last chunk, so
the next step's reads see every delivery the last one wrote. Chunks of one step share the
turn and plan side by side. A turn whose step has no chunk left open (a step cancelled
or ended some other way) is taken over.

This costs one small read per chunk, where claiming each recipient for the step (a row
per campaign and recipient) cost a write per recipient, 18% of a 100,000-recipient step.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from engine.store.models import Campaign, Notification, PlanChunk
from engine.store.states import CHUNK_OPEN

# Reads of the turn a taker makes when others keep changing it before giving up for now.
TRIES = 3


def take(session: Session, *, campaign_id: int, step_id: int) -> bool:
    """Take the campaign's planning turn for step `step_id` (a notification id), in
    `session`'s transaction; True when the step holds it (it may already have), False
    while another step with chunks still open holds it."""
    for _ in range(TRIES):
        holder = session.exec(
            select(Campaign.planning_step).where(col(Campaign.id) == campaign_id)
        ).first()
        if holder == step_id:
            return True
        if holder is not None and _still_planning(session, holder):
            return False
        expected = (
            col(Campaign.planning_step).is_(None)
            if holder is None
            else col(Campaign.planning_step) == holder
        )
        taken = session.execute(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, expected)
            .values(planning_step=step_id)
        )
        if getattr(taken, "rowcount", 0) == 1:
            return True
        # Someone changed the turn between the read and the write: look again.
    return False


def give_back(session: Session, step_id: int) -> None:
    """Give the turn back (the step's last chunk is finishing, in this transaction)."""
    session.execute(
        update(Campaign)
        .where(
            col(Campaign.id).in_(
                select(Notification.campaign_id).where(col(Notification.id) == step_id)
            ),
            col(Campaign.planning_step) == step_id,
        )
        .values(planning_step=None)
    )


def _still_planning(session: Session, step_id: int) -> bool:
    open_chunk = select(PlanChunk.seq).where(
        col(PlanChunk.notification_id) == step_id, col(PlanChunk.status).in_(CHUNK_OPEN)
    )
    return session.exec(open_chunk.limit(1)).first() is not None
