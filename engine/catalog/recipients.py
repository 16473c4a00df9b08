"""Recipients: upsert (one or many), read with derived segments, and erase."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from engine.catalog import follows
from engine.catalog.segments import activity, tier
from engine.schemas.catalog import RecipientIn, RecipientPatch, merged_attributes
from engine.settings import Settings
from engine.store.models import Delivery, Digest, Feedback, Recipient, Unsubscribe
from engine.timeutil import iso, now
from preferences import store

# Receipts of an erased recipient are kept under "~erased-<hex>": "~" is outside the ids the
# API accepts, so no later recipient can be given them.
ERASED_PREFIX = "~erased-"


def upsert(session: Session, recipient_id: str, changes: RecipientIn) -> Recipient:
    """Create or update a recipient; keys left out keep their value."""
    row = session.get(Recipient, recipient_id)
    if row is None:
        row = Recipient(id=recipient_id)
    for name in changes.model_fields_set:
        if name == "id":
            continue
        value = getattr(changes, name)
        if name == "annual_spend" and value is None:
            value = 0
        setattr(row, name, value)
    row.updated_at = now()
    session.add(row)
    return row


def patch(session: Session, recipient_id: str, changes: RecipientPatch) -> Recipient | None:
    """Apply a merge patch to a recipient (`RecipientPatch`); None when there is none.

    Raises `FieldError` when the merged `attributes` break their bounds.
    """
    row = session.get(Recipient, recipient_id)
    if row is None:
        return None
    for name in changes.model_fields_set:
        value = getattr(changes, name)
        if name == "attributes":
            value = merged_attributes(row.attributes, value) if value is not None else None
        elif name == "annual_spend" and value is None:
            value = 0
        setattr(row, name, value)
    row.updated_at = now()
    session.add(row)
    return row


def upsert_many(session: Session, items: Sequence[tuple[str, RecipientIn]]) -> list[Recipient]:
    """Upsert many recipients, loading the existing ones in one query."""
    ids = [rid for rid, _ in items]
    existing = {r.id: r for r in session.exec(select(Recipient).where(col(Recipient.id).in_(ids)))}
    stamp = now()
    rows = []
    for rid, changes in items:
        row = existing.get(rid) or Recipient(id=rid)
        for name in changes.model_fields_set - {"id"}:
            value = getattr(changes, name)
            setattr(row, name, 0 if name == "annual_spend" and value is None else value)
        row.updated_at = stamp
        existing[rid] = row
        rows.append(row)
    session.add_all(existing.values())
    return rows


def public(recipient: Recipient, settings: Settings) -> dict[str, Any]:
    """The recipient as the API shows it, with derived `tier` and `activity`."""
    return {
        "id": recipient.id,
        "name": recipient.name,
        "attributes": recipient.attributes or {},
        "email": recipient.email,
        "phone": recipient.phone,
        "push_tokens": recipient.push_tokens or [],
        "webhook_url": recipient.webhook_url,
        "timezone": recipient.timezone,
        "locale": recipient.locale,
        "annual_spend": recipient.annual_spend,
        "last_active_at": iso(recipient.last_active_at),
        "tags": recipient.tags or [],
        "tier": tier(recipient.annual_spend, settings),
        "activity": activity(recipient.last_active_at, now(), settings),
        "created_at": iso(recipient.created_at),
        "updated_at": iso(recipient.updated_at),
    }


def erase(session: Session, recipient_id: str) -> bool:
    """Remove a recipient's personal data: contact points, preferences, follows, message copy,
    comments.

    Receipts stay (counts and rates keep adding up) but no longer carry content, and they
    move to a tombstone id that no API id can spell: a recipient created later under the same
    id starts with an empty inbox and history instead of inheriting this person's.
    """
    row = session.get(Recipient, recipient_id)
    if row is None:
        return False
    session.delete(row)
    store.erase(session, recipient_id)
    follows.erase(session, recipient_id)
    session.exec(delete(Digest).where(col(Digest.recipient_id) == recipient_id))
    tombstone = f"{ERASED_PREFIX}{uuid.uuid4().hex}"
    session.exec(
        update(Delivery)
        .where(col(Delivery.recipient_id) == recipient_id)
        .values(recipient_id=tombstone, title=None, body=None, action_url=None)
    )
    session.exec(
        update(Feedback)
        .where(col(Feedback.recipient_id) == recipient_id)
        .values(recipient_id=tombstone, comment=None)
    )
    session.exec(
        update(Unsubscribe)
        .where(col(Unsubscribe.recipient_id) == recipient_id)
        .values(recipient_id=tombstone)
    )
    return True
