"""Whose turn it is to speak to a recipient for a campaign: one row per (campaign,
recipient) naming the latest step planned for them.

A step claims its recipients before it reads the earlier steps' deliveries. The claim
is one `INSERT … ON CONFLICT DO UPDATE` on the (campaign, recipient) key, so two steps
planned at the same moment for the same recipient take turns on that row: on
PostgreSQL the second waits for the first to commit and then sees its deliveries; on
SQLite the claim is the transaction's first write, which takes the one write turn
before anything is read. A step that finds a later step already claimed a recipient is
too late for them. Chunks of one step claim disjoint recipients and never wait for
each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col

from engine.store import bulk
from engine.store.models import CampaignRecipient


def claim(
    session: Session,
    *,
    campaign_id: int,
    notification_id: int,
    recipient_ids: Iterable[str],
    at: datetime,
) -> set[str]:
    """Claim `recipient_ids` for step `notification_id` (steps are numbered in the order
    they go) until the transaction ends; returns those it holds, leaving out the ones a
    later step of the campaign has already claimed."""
    rows = [
        {
            "campaign_id": campaign_id,
            "recipient_id": rid,
            "notification_id": notification_id,
            "updated_at": at,
        }
        for rid in sorted(set(recipient_ids))  # one order for every claim: no deadlock
    ]
    claimed = bulk.upsert(
        session,
        CampaignRecipient,
        rows,
        conflict=("campaign_id", "recipient_id"),
        update=("notification_id", "updated_at"),
        where="campaign_recipients.notification_id <= excluded.notification_id",
        returning=("recipient_id",),
    )
    return {row.recipient_id for row in claimed}


def erase(session: Session, recipient_id: str) -> None:
    """Forget which campaign steps reached a recipient (part of erasing them)."""
    session.execute(
        delete(CampaignRecipient).where(col(CampaignRecipient.recipient_id) == recipient_id)
    )
