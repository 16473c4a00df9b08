"""Sending API: enqueue notifications, read their status, record events and feedback,
and read a recipient's receipts and inbox."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlmodel import Session

from engine import metrics, notifications, receipts, sqlite
from engine.api.context import AFTERWARDS, DB, DISPATCH, SETTINGS, scope
from engine.api.middleware import json_body, path_key, path_row_id, validation_error
from engine.errors import Invalid, NotFound
from engine.models import Recipient
from engine.notifications import Accepted
from engine.schemas import BatchIn, EventIn, FeedbackIn, NotificationIn, row_id
from engine.timeutil import now

routes = web.RouteTableDef()
log = logging.getLogger("tidings.api")


def _paging(request: web.Request, cursor: str) -> tuple[int | None, int]:
    settings = request.app[SETTINGS]
    raw_limit = request.query.get("limit")
    limit = settings.page_size if raw_limit is None else row_id(raw_limit)
    if limit is None or not 1 <= limit <= 1000:
        raise Invalid("limit is a whole number from 1 to 1000", field="limit")
    raw_cursor = request.query.get(cursor)
    after = None if raw_cursor is None else row_id(raw_cursor)
    if raw_cursor is not None and after is None:
        raise Invalid(f"{cursor} is a delivery id: 1 to 18 digits", field=cursor)
    return after, limit


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
            notifications.mark_enqueued(session, [a.id for a in due], at)

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


@routes.post("/v1/notifications")
@scope("send")
async def post_notification(request: web.Request) -> web.Response:
    """Accept a notification: stored in SQL before the answer, then planned by workers."""
    body = await json_body(request)
    header = request.headers.get("Idempotency-Key")
    if header is not None and not 1 <= len(header) <= 200:
        raise Invalid("an Idempotency-Key is 1 to 200 characters", field="Idempotency-Key")
    if isinstance(body, dict) and header:
        if body.get("idempotency_key") not in (None, header):
            raise Invalid("the Idempotency-Key header and field differ", field="idempotency_key")
        body = {**body, "idempotency_key": header}
    spec = NotificationIn.model_validate(body)
    settings = request.app[SETTINGS]

    (accepted,) = await request.app[DB].run(
        notifications.accept_all, request.app[DB], [spec], settings=settings, batch=False
    )
    if not accepted.replayed:
        metrics.NOTIFICATIONS.labels(accepted.queue).inc()
        await _enqueue(request, [accepted])
    return web.json_response(
        accepted.body(),
        status=202,
        headers={"Idempotent-Replayed": "true"} if accepted.replayed else None,
    )


@routes.post("/v1/notifications/batch")
@scope("send")
async def post_batch(request: web.Request) -> web.Response:
    """Accept many notifications at once: all valid and stored, or none."""
    batch = BatchIn.model_validate(await json_body(request))
    settings = request.app[SETTINGS]
    if len(batch.notifications) > settings.max_batch_notifications:
        raise Invalid(
            f"at most {settings.max_batch_notifications} per batch", field="notifications"
        )
    specs = []
    for index, item in enumerate(batch.notifications):
        try:
            specs.append(NotificationIn.model_validate(item))
        except ValidationError as exc:
            error = validation_error(exc)
            error.field = f"notifications.{index}.{error.field}"
            raise error from None

    accepted = await request.app[DB].run(
        notifications.accept_all, request.app[DB], specs, settings=settings, batch=True
    )
    for result in accepted:
        if not result.replayed:
            metrics.NOTIFICATIONS.labels(result.queue).inc()
    await _enqueue(request, [a for a in accepted if not a.replayed])
    return web.json_response({"items": [a.body() for a in accepted]}, status=202)


@routes.get("/v1/notifications/{id}")
@scope("read")
async def get_notification(request: web.Request) -> web.Response:
    """Status, counts per delivery status, and deliveries with their history (paged by `after`)."""
    nid = path_row_id(request)
    after, limit = _paging(request, "after")

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return notifications.status(session, nid, after=after, limit=limit)

    return web.json_response(await request.app[DB].run(read))


@routes.post("/v1/deliveries/{id}/events")
@scope("send")
async def post_event(request: web.Request) -> web.Response:
    """Record opened, read, clicked or converted; reading cancels pending sends elsewhere."""
    did = path_row_id(request)
    event = EventIn.model_validate(await json_body(request))

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return receipts.record_event(session, did, event.type)

    return web.json_response(await request.app[DB].run(write))


@routes.post("/v1/deliveries/{id}/feedback")
@scope("send")
async def post_feedback(request: web.Request) -> web.Response:
    """Record 👍 / 😕 / 👎 (`up`, `meh`, `down`) with an optional comment."""
    did = path_row_id(request)
    feedback = FeedbackIn.model_validate(await json_body(request))

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return receipts.record_feedback(session, did, feedback.rating, feedback.comment)

    return web.json_response(await request.app[DB].run(write))


def _known(session: Session, rid: str) -> None:
    if session.get(Recipient, rid) is None:
        raise NotFound(f"no recipient {rid!r}", field="id")


@routes.get("/v1/recipients/{id}/deliveries")
@scope("read")
async def get_recipient_deliveries(request: web.Request) -> web.Response:
    """A recipient's receipts, newest first (paged by `before`)."""
    rid = path_key(request, "id")
    before, limit = _paging(request, "before")

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            _known(session, rid)
            return receipts.recipient_deliveries(session, rid, before=before, limit=limit)

    return web.json_response(await request.app[DB].run(read))


@routes.get("/v1/recipients/{id}/inbox")
@scope("read")
async def get_inbox(request: web.Request) -> web.Response:
    """A recipient's in-app inbox, newest first, with the unread count."""
    rid = path_key(request, "id")
    before, limit = _paging(request, "before")

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            _known(session, rid)
            return receipts.inbox(session, rid, before=before, limit=limit)

    return web.json_response(await request.app[DB].run(read))
