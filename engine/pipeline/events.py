"""Delivery events pushed to the platform's endpoints, as signed Standard Webhooks.

The outbox (`engine.store.outbox`) is filled in the same transactions as the receipts.
The drain job, on its own queue, takes outbox rows in bulk (deleting them as it takes
them, so two drains never take one row), fans them out into batches of up to
`BATCH_EVENTS` events per endpoint, and posts each batch as one request:

    POST <url>   webhook-id: evb_<batch>   webhook-timestamp   webhook-signature
    {"type": "events", "timestamp": "...",
     "data": {"events": [{"id": "evt_<n>", "type": "delivery.sent",
                          "timestamp": "...", "data": {...}}, ...]}}

An event's `id` is the same in every endpoint's copy and in every retry; a batch's
`webhook-id` is the same in every retry, so a receiver drops what it already has. A batch
that fails is retried with backoff, up to `TIDINGS_EVENTS_MAX_ATTEMPTS`; an endpoint
that fails `TIDINGS_EVENTS_PAUSE_AFTER` times in a row, or whose URL the outbound policy
refuses, is paused with the reason, its batches kept until an admin resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Text, cast, delete, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from standardwebhooks import Webhook

from channels.errors import PermanentError, TransientError
from channels.http import HttpChannel
from channels.outbound import REFUSED
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, EventBatch, EventEndpoint, EventOutbox
from engine.store.states import BatchStatus
from engine.timeutil import aware, iso, now
from engine.worker.runtime import Runtime

log = logging.getLogger("tidings.events")
BATCH_EVENTS = 100  # events per request
TAKE = 5_000  # outbox rows fanned out per round (one short write transaction)
POSTS = 100  # batches leased and posted per round
PER_ENDPOINT = 16  # requests in flight to one endpoint at a time


def backoff(attempt: int, base: float) -> float:
    """Seconds before retry number `attempt` (1-based): base × 1, 4, 16…, at most an hour."""
    return float(min(base * 4 ** (attempt - 1), 3600))


def webhook_id(batch_id: int) -> str:
    return f"evb_{batch_id}"


def event_id(outbox_id: int) -> str:
    return f"evt_{outbox_id}"


def _document(row: Any, delivery: Any) -> dict[str, Any]:
    """One event as the endpoint reads it."""
    data: dict[str, Any]
    if row.type.startswith("delivery."):
        data = {
            "delivery_id": str(row.delivery_id),
            "notification_id": str(delivery.notification_id) if delivery else None,
            "recipient": delivery.recipient_id if delivery else None,
            "channel": delivery.channel if delivery else None,
            "category": delivery.category if delivery else None,
            "status": row.type.removeprefix("delivery."),
            "reason": row.reason,
            "error": row.detail,
        }
    elif row.type == "feedback.created":
        extra = row.data or {}
        data = {
            "delivery_id": str(row.delivery_id),
            "recipient": row.recipient_id,
            "category": extra.get("category"),
            "rating": extra.get("rating"),
            "comment": extra.get("comment"),
        }
    else:  # recipient.unsubscribed, with the message whose link was used when known
        data = {
            "recipient": row.recipient_id,
            "delivery_id": None if row.delivery_id is None else str(row.delivery_id),
        }
    return {"id": event_id(row.id), "type": row.type, "timestamp": iso(row.at), "data": data}


def fan_out(db: Database, *, limit: int = TAKE) -> int:
    """Move up to `limit` outbox rows into batches per endpoint; returns how many rows."""
    table = EventOutbox.__table__  # type: ignore[attr-defined]
    with db.session() as session:
        oldest = (
            select(EventOutbox.id)
            .order_by(col(EventOutbox.id))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        # On the table, not the model: the ORM's bookkeeping for rows deleted in bulk
        # costs more than the delete.
        taken = list(
            session.execute(
                delete(table)
                .where(table.c.id.in_(oldest.scalar_subquery()))
                .returning(*table.columns)
            )
        )
        if not taken:
            return 0
        taken.sort(key=lambda r: r.id)
        ids = {r.delivery_id for r in taken if r.delivery_id is not None}
        # Only the columns an event tells: whole rows would decode every status and stamp.
        told = Delivery.__table__.c  # type: ignore[attr-defined]
        deliveries = {
            d.id: d
            for d in session.execute(
                sa_select(
                    told.id, told.notification_id, told.recipient_id, told.channel, told.category
                ).where(told.id.in_(ids))
            )
        }
        documents = [(r.type, _document(r, deliveries.get(r.delivery_id))) for r in taken]
        at = now()
        batches = []
        for endpoint in session.exec(select(EventEndpoint)):
            wanted = set(endpoint.types)
            mine = [doc for kind, doc in documents if kind in wanted]
            for start in range(0, len(mine), BATCH_EVENTS):
                part = mine[start : start + BATCH_EVENTS]
                batches.append(
                    {
                        "endpoint_id": endpoint.id or 0,
                        "events": part,
                        "count": len(part),
                        "status": BatchStatus.PENDING,
                        "attempts": 0,
                        "next_attempt_at": at,
                        "created_at": at,
                    }
                )
        if batches:
            session.execute(insert(EventBatch), batches)
    return len(taken)


@dataclass(frozen=True)
class Claimed:
    """A batch leased to this drain: its events as the JSON array stored, posted as is."""

    id: int
    endpoint_id: int
    attempts: int
    events: str


@dataclass(frozen=True)
class Outcome:
    batch_id: int
    endpoint_id: int
    ok: bool
    error: str | None = None
    status: int | None = None
    refused: bool = False


class EventPoster(HttpChannel):
    """Posts batches: the HTTP client, outbound address policy and status mapping every
    HTTP channel uses. One drain keeps one poster, so its connections stay open from
    one round of posts to the next."""

    name = "events"

    async def send(self, message: Any) -> Any:  # pragma: no cover - not a channel
        raise NotImplementedError


def body_of(batch_id: int, events: list[dict[str, Any]], at: datetime) -> str:
    return raw_body(orjson.dumps(events).decode(), at)


def raw_body(events: str, at: datetime) -> str:
    """The request body around `events`, a JSON array as stored."""
    stamp = orjson.dumps(at.isoformat()).decode()
    return f'{{"type":"events","timestamp":{stamp},"data":{{"events":{events}}}}}'


def _claim(session: Session, at: datetime, lease: datetime, limit: int) -> list[Claimed]:
    """Lease due batches of endpoints that are not paused (and batches whose lease ran out:
    the worker posting them died) to this job."""
    active = select(EventEndpoint.id).where(col(EventEndpoint.paused_at).is_(None))
    due = (
        select(EventBatch.id)
        .where(
            col(EventBatch.endpoint_id).in_(active.scalar_subquery()),
            or_(
                (col(EventBatch.status) == BatchStatus.PENDING)
                & (col(EventBatch.next_attempt_at) <= at),
                (col(EventBatch.status) == BatchStatus.SENDING)
                & (col(EventBatch.lease_until) < at),
            ),
        )
        .order_by(col(EventBatch.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [
        r[0]
        for r in session.execute(
            update(EventBatch)
            .where(col(EventBatch.id).in_(due.scalar_subquery()))
            .values(status=BatchStatus.SENDING, lease_until=lease)
            .returning(col(EventBatch.id))
        )
    ]
    if not ids:
        return []
    # The events as stored text: decoding them only to encode them again costs more
    # than posting them.
    rows = session.execute(
        sa_select(
            col(EventBatch.id),
            col(EventBatch.endpoint_id),
            col(EventBatch.attempts),
            cast(col(EventBatch.events), Text),
        )
        .where(col(EventBatch.id).in_(ids))
        .order_by(col(EventBatch.id))
    )
    return [Claimed(*row) for row in rows]


def claim_due(
    rt: Runtime, *, limit: int = POSTS
) -> tuple[list[Claimed], dict[int | None, EventEndpoint]]:
    """Lease up to `limit` due batches, with the endpoints they go to."""
    at = now()
    # Long enough for every round of posts one endpoint's share of them may take.
    rounds = -(-limit // PER_ENDPOINT)
    lease = at + timedelta(seconds=rt.settings.http_timeout * rounds + rt.settings.lease_margin)
    with rt.db.session() as session:
        batches = _claim(session, at, lease, limit)
        ids = {b.endpoint_id for b in batches}
        endpoints = {
            e.id: e
            for e in session.exec(select(EventEndpoint).where(col(EventEndpoint.id).in_(ids)))
        }
    return batches, endpoints


def post_due(rt: Runtime, *, limit: int = POSTS) -> int:
    """Post up to `limit` due batches and record each outcome; returns how many."""
    batches, endpoints = claim_due(rt, limit=limit)
    if not batches:
        return 0
    poster = EventPoster(rt.settings)
    try:
        outcomes = rt.run(post_all(poster, batches, endpoints))
    finally:
        rt.run(poster.close())
    record(rt.db, rt.settings, batches, outcomes)
    return len(batches)


async def post_all(
    poster: EventPoster, batches: list[Claimed], endpoints: dict[int | None, EventEndpoint]
) -> list[Outcome]:
    """Post each batch, at most `PER_ENDPOINT` at a time to one endpoint."""
    gates: dict[int, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_ENDPOINT))

    async def one(batch: Claimed) -> Outcome:
        endpoint = endpoints[batch.endpoint_id]
        async with gates[batch.endpoint_id]:
            at = now()
            body = raw_body(batch.events, at)
            msg_id = webhook_id(batch.id)
            headers = {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": Webhook(endpoint.secret).sign(msg_id, at, body),
            }
            try:
                await poster.post(endpoint.url, body, headers)
            except PermanentError as exc:
                refused = REFUSED in str(exc) or "TIDINGS_OUTBOUND_ALLOW" in str(exc)
                return Outcome(batch.id, batch.endpoint_id, False, str(exc), refused=refused)
            except TransientError as exc:
                return Outcome(batch.id, batch.endpoint_id, False, str(exc))
        return Outcome(batch.id, batch.endpoint_id, True, status=200)

    return list(await asyncio.gather(*(one(b) for b in batches)))


def record(
    db: Database, settings: Settings, batches: list[Claimed], outcomes: list[Outcome]
) -> None:
    """Write what came of each post: sent batches in one statement, failed ones retried
    with backoff or given up, and each endpoint's failures in a row (pausing it)."""
    at = now()
    attempts = {b.id: b.attempts for b in batches}
    by_endpoint: dict[int, list[Outcome]] = defaultdict(list)
    sending = col(EventBatch.status) == BatchStatus.SENDING
    with db.session() as session:
        for o in outcomes:
            by_endpoint[o.endpoint_id].append(o)
        sent = [o.batch_id for o in outcomes if o.ok]
        if sent:
            session.execute(
                update(EventBatch)
                .where(col(EventBatch.id).in_(sent), sending)
                .values(
                    status=BatchStatus.SENT,
                    sent_at=at,
                    last_error=None,
                    lease_until=None,
                    attempts=EventBatch.attempts + 1,
                )
            )
        for o in outcomes:
            if o.ok:
                continue
            tries = attempts[o.batch_id] + 1
            values: dict[str, Any] = {"attempts": tries, "lease_until": None}
            if tries >= settings.events_max_attempts:
                values.update(status=BatchStatus.FAILED, last_error=o.error)
            else:
                values.update(
                    status=BatchStatus.PENDING,
                    last_error=o.error,
                    next_attempt_at=at
                    + timedelta(seconds=backoff(tries, settings.events_retry_base)),
                )
            session.execute(
                update(EventBatch).where(col(EventBatch.id) == o.batch_id, sending).values(**values)
            )
        for endpoint_id, mine in by_endpoint.items():
            endpoint = session.get(EventEndpoint, endpoint_id, with_for_update=True)
            if endpoint is None:
                continue
            for o in sorted(mine, key=lambda o: o.batch_id):
                if o.ok:
                    endpoint.failures = 0
                    endpoint.last_success_at = at
                    continue
                endpoint.failures += 1
                endpoint.last_error = o.error
                if endpoint.paused_at is None and (
                    o.refused or endpoint.failures >= settings.events_pause_after
                ):
                    endpoint.paused_at = at
                    endpoint.pause_reason = (
                        f"its URL is refused: {o.error}"
                        if o.refused
                        else f"{endpoint.failures} failed attempts in a row; last: {o.error}"
                    )
                    log.warning(
                        "paused an event endpoint",
                        extra={"endpoint_id": endpoint_id, "reason": endpoint.pause_reason},
                    )
            session.add(endpoint)


def pending(db: Database) -> bool:
    """Whether there is outbox work or a batch due now."""
    at = now()
    with db.session() as session:
        if session.exec(select(EventOutbox.id).limit(1)).first() is not None:
            return True
        active = select(EventEndpoint.id).where(col(EventEndpoint.paused_at).is_(None))
        due = session.exec(
            select(func.min(EventBatch.next_attempt_at)).where(
                col(EventBatch.status) == BatchStatus.PENDING,
                col(EventBatch.endpoint_id).in_(active.scalar_subquery()),
            )
        ).one()
    stamp = aware(due)
    return stamp is not None and stamp <= at


def drain(rt: Runtime, *, budget: float = 20.0) -> bool:
    """Fan out and post until nothing is left or `budget` seconds passed; True when work
    was left for the next drain.

    Each round leases up to `POSTS` due batches and posts them on the I/O loop, keeping
    its connections open, while this thread fans out the next outbox rows.
    """
    deadline = now() + timedelta(seconds=budget)
    poster = EventPoster(rt.settings)
    try:
        while now() < deadline:
            batches, endpoints = claim_due(rt)
            posting = rt.submit(post_all(poster, batches, endpoints)) if batches else None
            moved = fan_out(rt.db)
            if posting is not None:
                record(rt.db, rt.settings, batches, posting.result())
            if not moved and not batches:
                return False
        return True
    finally:
        rt.run(poster.close())
