"""Sending API: enqueue notifications, read their status, record events and feedback,
and read a recipient's receipts and inbox."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from sqlmodel import Session

from engine.api.context import AFTERWARDS, DB, DISPATCH, KEY_SCOPES, SETTINGS, scope
from engine.api.contract import Reply, operation
from engine.api.management import check_outbound
from engine.errors import Forbidden, Invalid, NotFound
from engine.pipeline import accept, receipts
from engine.pipeline.accept import Accepted
from engine.schemas.answers import (
    AcceptedOut,
    BatchAcceptedOut,
    DeliveryPage,
    EventRecordedOut,
    FeedbackOut,
    InboxOut,
    NotificationOut,
)
from engine.schemas.campaigns import CampaignIn
from engine.schemas.notifications import BatchIn, EventIn, FeedbackIn, NotificationIn
from engine.schemas.params import (
    IdempotencyHeaders,
    NotificationPage,
    ReceiptPage,
    RecipientPath,
    RowPath,
)
from engine.store.models import Recipient
from engine.store.states import NotificationStatus

routes = web.RouteTableDef()


def after_answer(request: web.Request) -> accept.Later:
    """Bookkeeping that runs after the answer has gone out (awaited on shutdown); it may
    be handed over from a database thread."""
    app = request.app
    loop = asyncio.get_running_loop()

    def start(work: Callable[[], None]) -> None:
        task = asyncio.ensure_future(app[DB].run(work))
        app[AFTERWARDS].add(task)
        task.add_done_callback(app[AFTERWARDS].discard)

    def later(work: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(start, work)

    return later


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


# What an Idempotency-Key may name: a notification, or a campaign.
K = TypeVar("K", NotificationIn, CampaignIn)


def keyed(spec: K, headers: IdempotencyHeaders) -> K:
    """`spec` with the `Idempotency-Key` header as its key; 422 when the header and the
    body's `idempotency_key` field name different keys."""
    if (key := headers.idempotency_key) is None:
        return spec
    if spec.idempotency_key not in (None, key):
        raise Invalid("the Idempotency-Key header and field differ", field="idempotency_key")
    return spec.model_copy(update={"idempotency_key": key})


def replayed(answer: Any, again: bool) -> Reply:
    """A 202 answer, marked `Idempotent-Replayed` when it answers an earlier request."""
    return Reply(answer, status=202, headers={"Idempotent-Replayed": "true"} if again else {})


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
    spec = keyed(body, headers)
    recipient_writes(request, [spec], batch=False)
    (accepted,) = await request.app[DB].run(
        accept.submit,
        request.app[DB],
        [spec],
        settings=request.app[SETTINGS],
        planner=request.app[DISPATCH],
        later=after_answer(request),
    )
    return replayed(accepted_out(accepted), accepted.replayed)


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
        accept.submit,
        request.app[DB],
        body.notifications,
        settings=settings,
        planner=request.app[DISPATCH],
        batch=True,
        later=after_answer(request),
    )
    return Reply(BatchAcceptedOut(items=[accepted_out(a) for a in accepted]), status=202)


def accepted_out(accepted: Accepted) -> AcceptedOut:
    """The answer for an accepted notification (or for the first of a repeated key)."""
    return AcceptedOut(
        id=str(accepted.id), status=NotificationStatus.ACCEPTED, recipients=accepted.recipients
    )


@routes.get("/v1/notifications/{id}")
@scope("read")
@operation(path=RowPath, query=NotificationPage, responses={200: NotificationOut})
async def get_notification(
    request: web.Request, path: RowPath, query: NotificationPage
) -> accept.NotificationView:
    """Status, counts per delivery status, and deliveries with their history (paged by `after`)."""
    limit = query.limit or request.app[SETTINGS].page_size
    after = int(query.after) if query.after else None

    return await request.app[DB].read(accept.status, int(path.id), after=after, limit=limit)


NOT_DELIVERED = {
    409: "The delivery never reached its recipient (`not_delivered`); the message names its status."
}


@routes.post("/v1/deliveries/{id}/events")
@scope("send")
@operation(path=RowPath, body=EventIn, responses={200: EventRecordedOut}, errors=NOT_DELIVERED)
async def post_event(request: web.Request, path: RowPath, body: EventIn) -> receipts.EventRecorded:
    """Record opened, read, clicked or converted; reading cancels pending sends elsewhere."""
    return await request.app[DB].write(receipts.record_event, int(path.id), body.type)


@routes.post("/v1/deliveries/{id}/feedback")
@scope("send")
@operation(path=RowPath, body=FeedbackIn, responses={200: FeedbackOut}, errors=NOT_DELIVERED)
async def post_feedback(
    request: web.Request, path: RowPath, body: FeedbackIn
) -> receipts.FeedbackRecorded:
    """Record 👍 / 😕 / 👎 (`up`, `meh`, `down`) with an optional comment."""
    return await request.app[DB].write(
        receipts.record_feedback, int(path.id), body.rating, body.comment
    )


def _known(session: Session, rid: str) -> None:
    if session.get(Recipient, rid) is None:
        raise NotFound(f"no recipient {rid!r}", field="id")


@routes.get("/v1/recipients/{id}/deliveries")
@scope("read")
@operation(path=RecipientPath, query=ReceiptPage, responses={200: DeliveryPage})
async def get_recipient_deliveries(
    request: web.Request, path: RecipientPath, query: ReceiptPage
) -> receipts.DeliveryList:
    """A recipient's receipts, newest first (paged by `before`)."""
    limit = query.limit or request.app[SETTINGS].page_size
    before = int(query.before) if query.before else None

    def read(session: Session) -> receipts.DeliveryList:
        _known(session, path.id)
        return receipts.recipient_deliveries(session, path.id, before=before, limit=limit)

    return await request.app[DB].read(read)


@routes.get("/v1/recipients/{id}/inbox")
@scope("read")
@operation(path=RecipientPath, query=ReceiptPage, responses={200: InboxOut})
async def get_inbox(
    request: web.Request, path: RecipientPath, query: ReceiptPage
) -> receipts.Inbox:
    """A recipient's in-app inbox, newest first, with the unread count."""
    limit = query.limit or request.app[SETTINGS].page_size
    before = int(query.before) if query.before else None

    def read(session: Session) -> receipts.Inbox:
        _known(session, path.id)
        return receipts.inbox(session, path.id, before=before, limit=limit)

    return await request.app[DB].read(read)
