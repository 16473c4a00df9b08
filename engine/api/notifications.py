"""Sending API: enqueue notifications, read their status, record events and feedback,
and read a recipient's receipts and inbox."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine import metrics
from engine.api.context import AFTERWARDS, DB, DISPATCH, KEY_SCOPES, SETTINGS, scope
from engine.api.contract import Reply, operation
from engine.api.management import check_outbound
from engine.errors import Forbidden, Invalid, NotFound
from engine.pipeline import accept, receipts
from engine.pipeline.accept import Accepted
from engine.schemas import (
    AcceptedOut,
    BatchAcceptedOut,
    BatchIn,
    DeliveryPage,
    EventIn,
    EventRecordedOut,
    FeedbackIn,
    FeedbackOut,
    IdempotencyHeaders,
    InboxOut,
    NotificationIn,
    NotificationOut,
    NotificationPage,
    ReceiptPage,
    RecipientPath,
    RowPath,
)
from engine.store import sqlite
from engine.store.models import Recipient
from engine.timeutil import now

routes = web.RouteTableDef()
log = logging.getLogger("tidings.api")


async def _enqueue(request: web.Request, accepted: list[Accepted]) -> None:
    """Hand due notifications to the broker; if Redis is down they stay accepted in SQL
    and the scheduler enqueues them later.

    Noting when they were enqueued is bookkeeping for that recovery: it is written after
    the answer, giving way to the writes that deliver (the worker planning them).
    """
    due = [a for a in accepted if a.due]
    if not due:
        return
    dispatch = request.app[DISPATCH]
    db = request.app[DB]

    def send() -> None:
        for item in due:
            dispatch.plan(item.id, item.queue)

    def mark(at: datetime) -> None:
        with sqlite.background(), db.session() as session:
            accept.mark_enqueued(session, [a.id for a in due], at)

    try:
        await db.run(send)
    except Exception as exc:
        log.warning(
            "could not enqueue %d notifications now (%s); the scheduler will", len(due), exc
        )
        return
    afterwards = request.app[AFTERWARDS]
    task = asyncio.ensure_future(db.run(mark, now()))
    afterwards.add(task)
    task.add_done_callback(_finished)
    task.add_done_callback(afterwards.discard)


def _finished(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning(
            "could not note notifications as enqueued (%s); the scheduler will enqueue them "
            "again, and planning twice changes nothing",
            exc,
        )


def recipient_writes(request: web.Request, specs: list[NotificationIn], *, batch: bool) -> None:
    """Recipient objects in `to` write recipients: the key needs the `recipients` scope as
    well, and their webhook targets pass the policy `PUT /v1/recipients/{id}` applies."""
    settings = request.app[SETTINGS]
    scopes = request.get(KEY_SCOPES) or frozenset()
    for number, spec in enumerate(specs):
        if not spec.upserts:
            continue
        where = f"notifications.{number}.to" if batch else "to"
        if not {"recipients", "admin"} & scopes:
            raise Forbidden(
                "recipient objects in `to` create or update recipients: the key needs the "
                "'recipients' scope as well",
                field=where,
            )
        positions = {rid: index for index, rid in enumerate(spec.recipient_ids)}
        for entry in spec.upserts:
            check_outbound(entry, settings, f"{where}.{positions[entry.id]}.webhook_url")


REPLAYED = {"Idempotent-Replayed": "true when this answers an earlier request with the same key"}


@routes.post("/v1/notifications")
@scope("send")
@operation(
    headers=IdempotencyHeaders,
    body=NotificationIn,
    responses={202: AcceptedOut},
    response_headers={202: REPLAYED},
)
async def post_notification(
    request: web.Request, headers: IdempotencyHeaders, body: NotificationIn
) -> Reply:
    """Accept a notification: stored in SQL before the answer, then planned by workers."""
    spec = body
    if (key := headers.idempotency_key) is not None:
        if spec.idempotency_key not in (None, key):
            raise Invalid("the Idempotency-Key header and field differ", field="idempotency_key")
        spec = spec.model_copy(update={"idempotency_key": key})
    recipient_writes(request, [spec], batch=False)
    settings = request.app[SETTINGS]

    (accepted,) = await request.app[DB].run(
        accept.accept_all, request.app[DB], [spec], settings=settings, batch=False
    )
    if not accepted.replayed:
        metrics.NOTIFICATIONS.labels(accepted.queue).inc()
        await _enqueue(request, [accepted])
    return Reply(
        accepted.body(),
        status=202,
        headers={"Idempotent-Replayed": "true"} if accepted.replayed else {},
    )


@routes.post("/v1/notifications/batch")
@scope("send")
@operation(body=BatchIn, responses={202: BatchAcceptedOut})
async def post_batch(request: web.Request, body: BatchIn) -> Reply:
    """Accept many notifications at once: all valid and stored, or none.

    At most `TIDINGS_MAX_BATCH_NOTIFICATIONS` (100) per call.
    """
    settings = request.app[SETTINGS]
    if len(body.notifications) > settings.max_batch_notifications:
        raise Invalid(
            f"at most {settings.max_batch_notifications} per batch", field="notifications"
        )
    recipient_writes(request, body.notifications, batch=True)
    accepted = await request.app[DB].run(
        accept.accept_all,
        request.app[DB],
        body.notifications,
        settings=settings,
        batch=True,
    )
    for result in accepted:
        if not result.replayed:
            metrics.NOTIFICATIONS.labels(result.queue).inc()
    await _enqueue(request, [a for a in accepted if not a.replayed])
    return Reply({"items": [a.body() for a in accepted]}, status=202)


@routes.get("/v1/notifications/{id}")
@scope("read")
@operation(path=RowPath, query=NotificationPage, responses={200: NotificationOut})
async def get_notification(
    request: web.Request, path: RowPath, query: NotificationPage
) -> dict[str, Any]:
    """Status, counts per delivery status, and deliveries with their history (paged by `after`)."""
    limit = query.limit or request.app[SETTINGS].page_size
    after = int(query.after) if query.after else None

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return accept.status(session, int(path.id), after=after, limit=limit)

    return await request.app[DB].run(read)


NOT_DELIVERED = {
    409: "The delivery never reached its recipient (`not_delivered`); the message names its status."
}


@routes.post("/v1/deliveries/{id}/events")
@scope("send")
@operation(path=RowPath, body=EventIn, responses={200: EventRecordedOut}, errors=NOT_DELIVERED)
async def post_event(request: web.Request, path: RowPath, body: EventIn) -> dict[str, Any]:
    """Record opened, read, clicked or converted; reading cancels pending sends elsewhere."""

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return receipts.record_event(session, int(path.id), body.type)

    return await request.app[DB].run(write)


@routes.post("/v1/deliveries/{id}/feedback")
@scope("send")
@operation(path=RowPath, body=FeedbackIn, responses={200: FeedbackOut}, errors=NOT_DELIVERED)
async def post_feedback(request: web.Request, path: RowPath, body: FeedbackIn) -> dict[str, Any]:
    """Record 👍 / 😕 / 👎 (`up`, `meh`, `down`) with an optional comment."""

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return receipts.record_feedback(session, int(path.id), body.rating, body.comment)

    return await request.app[DB].run(write)


def _known(session: Session, rid: str) -> None:
    if session.get(Recipient, rid) is None:
        raise NotFound(f"no recipient {rid!r}", field="id")


@routes.get("/v1/recipients/{id}/deliveries")
@scope("read")
@operation(path=RecipientPath, query=ReceiptPage, responses={200: DeliveryPage})
async def get_recipient_deliveries(
    request: web.Request, path: RecipientPath, query: ReceiptPage
) -> dict[str, Any]:
    """A recipient's receipts, newest first (paged by `before`)."""
    limit = query.limit or request.app[SETTINGS].page_size
    before = int(query.before) if query.before else None

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            _known(session, path.id)
            return receipts.recipient_deliveries(session, path.id, before=before, limit=limit)

    return await request.app[DB].run(read)


@routes.get("/v1/recipients/{id}/inbox")
@scope("read")
@operation(path=RecipientPath, query=ReceiptPage, responses={200: InboxOut})
async def get_inbox(
    request: web.Request, path: RecipientPath, query: ReceiptPage
) -> dict[str, Any]:
    """A recipient's in-app inbox, newest first, with the unread count."""
    limit = query.limit or request.app[SETTINGS].page_size
    before = int(query.before) if query.before else None

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            _known(session, path.id)
            return receipts.inbox(session, path.id, before=before, limit=limit)

    return await request.app[DB].run(read)
