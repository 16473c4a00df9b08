"""Registering the endpoints delivery events are pushed to, and reading how it goes.

A new endpoint gets a Standard Webhooks secret (`whsec_` and 24 random bytes in base64),
shown once, and only the events that happen after it was registered.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from engine.errors import NotFound
from engine.pipeline.events import webhook_id
from engine.store.models import EventBatch, EventEndpoint
from engine.store.outbox import types_of
from engine.store.states import BatchStatus
from engine.timeutil import iso, now


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def create(
    session: Session, *, url: str, types: Sequence[str] | None, description: str | None
) -> EventEndpoint:
    row = EventEndpoint(
        url=url, types=types_of(types), description=description, secret=new_secret()
    )
    session.add(row)
    session.flush()
    return row


def _get(session: Session, endpoint_id: int) -> EventEndpoint:
    row = session.get(EventEndpoint, endpoint_id)
    if row is None:
        raise NotFound(f"no event endpoint {endpoint_id}", field="id")
    return row


def _backlog(session: Session, ids: list[int]) -> dict[tuple[int, str], int]:
    out: dict[tuple[int, str], int] = {}
    if ids:
        for endpoint_id, state, count in session.exec(
            select(EventBatch.endpoint_id, EventBatch.status, func.count())
            .where(col(EventBatch.endpoint_id).in_(ids), col(EventBatch.status) != BatchStatus.SENT)
            .group_by(col(EventBatch.endpoint_id), col(EventBatch.status))
        ):
            out[(endpoint_id, state)] = count
    return out


def public(row: EventEndpoint, backlog: dict[tuple[int, str], int]) -> dict[str, Any]:
    """An endpoint as the API shows it: never its secret."""
    rid = row.id or 0
    return {
        "id": str(rid),
        "url": row.url,
        "types": row.types,
        "description": row.description,
        "failures": row.failures,
        "last_error": row.last_error,
        "last_success_at": iso(row.last_success_at),
        "paused": row.paused_at is not None,
        "paused_at": iso(row.paused_at),
        "pause_reason": row.pause_reason,
        "pending_batches": backlog.get((rid, BatchStatus.PENDING), 0)
        + backlog.get((rid, BatchStatus.SENDING), 0),
        "failed_batches": backlog.get((rid, BatchStatus.FAILED), 0),
        "created_at": iso(row.created_at),
    }


def listing(session: Session) -> list[dict[str, Any]]:
    rows = list(session.exec(select(EventEndpoint).order_by(col(EventEndpoint.id))))
    backlog = _backlog(session, [r.id for r in rows if r.id is not None])
    return [public(r, backlog) for r in rows]


def one(session: Session, endpoint_id: int) -> dict[str, Any]:
    row = _get(session, endpoint_id)
    return public(row, _backlog(session, [endpoint_id]))


def remove(session: Session, endpoint_id: int) -> None:
    """Delete an endpoint and every batch still waiting for it."""
    session.delete(_get(session, endpoint_id))
    session.execute(delete(EventBatch).where(col(EventBatch.endpoint_id) == endpoint_id))


def resume(session: Session, endpoint_id: int) -> dict[str, Any]:
    """Post to a paused endpoint again: its waiting batches go at once, failed ones too."""
    row = _get(session, endpoint_id)
    at = now()
    row.paused_at = None
    row.pause_reason = None
    row.failures = 0
    session.add(row)
    for batch in session.exec(
        select(EventBatch).where(
            col(EventBatch.endpoint_id) == endpoint_id,
            col(EventBatch.status).in_((BatchStatus.PENDING, BatchStatus.FAILED)),
        )
    ):
        batch.status = BatchStatus.PENDING
        batch.attempts = 0
        batch.next_attempt_at = at
        session.add(batch)
    return public(row, _backlog(session, [endpoint_id]))


def failures(
    session: Session, endpoint_id: int, *, before: int | None, limit: int
) -> dict[str, Any]:
    """Batches that failed at least once (retrying or given up), newest first."""
    _get(session, endpoint_id)
    query = select(EventBatch).where(
        col(EventBatch.endpoint_id) == endpoint_id, col(EventBatch.last_error).is_not(None)
    )
    if before is not None:
        query = query.where(col(EventBatch.id) < before)
    page = list(session.exec(query.order_by(col(EventBatch.id).desc()).limit(limit + 1)))
    more = len(page) > limit
    page = page[:limit]
    items = [
        {
            "id": str(b.id),
            "webhook_id": webhook_id(b.id or 0),
            "status": b.status,
            "events": b.count,
            "attempts": b.attempts,
            "last_error": b.last_error,
            "next_attempt_at": iso(b.next_attempt_at) if b.status == BatchStatus.PENDING else None,
            "created_at": iso(b.created_at),
        }
        for b in page
    ]
    return {"items": items, "next": str(page[-1].id) if more and page else None}
