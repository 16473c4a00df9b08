"""Message log API: notifications listed and filtered, one delivery with its history,
cancelling a notification, and recipients listed by segment.

Reads need the `read` scope. Cancelling needs `send`: the backend that sends a
notification is the one that learns it should not go (the sale was called off).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import operation
from engine.catalog import recipients as catalog
from engine.ops import message_log
from engine.pipeline import cancel
from engine.schemas.log import (
    CancelledOut,
    DeliveryDetailOut,
    NotificationList,
    NotificationsQuery,
    RecipientList,
    RecipientsQuery,
)
from engine.schemas.params import RowPath
from engine.store.states import NotificationStatus
from engine.timeutil import iso

routes = web.RouteTableDef()


@routes.get("/v1/notifications")
@scope("read")
@operation(query=NotificationsQuery, responses={200: NotificationList})
async def list_notifications(request: web.Request, query: NotificationsQuery) -> dict[str, Any]:
    """Notifications newest first, with counts per delivery status; filtered by
    `category`, `status` and `created_after`/`created_before`, paged by `before`."""
    limit = query.limit or request.app[SETTINGS].page_size

    return await request.app[DB].read(
        message_log.notifications,
        category=query.category,
        state=query.status,
        created_after=query.created_after,
        created_before=query.created_before,
        before=int(query.before) if query.before else None,
        limit=limit,
    )


@routes.get("/v1/deliveries/{id}")
@scope("read")
@operation(path=RowPath, responses={200: DeliveryDetailOut})
async def get_delivery(request: web.Request, path: RowPath) -> message_log.DeliveryDetail:
    """One delivery: status, reason, error, attempts, its copy and its event history."""
    return await request.app[DB].read(message_log.delivery, int(path.id))


@routes.post("/v1/notifications/{id}/cancel")
@scope("send")
@operation(path=RowPath, responses={200: CancelledOut})
async def cancel_notification(request: web.Request, path: RowPath) -> dict[str, Any]:
    """Cancel a notification: its scheduled and queued deliveries end `suppressed` with
    reason `cancelled`, the part of its audience not planned yet is never planned, and
    sent deliveries stay as they are. Nothing of it is sent after this answer.

    The answer waits (at most a delivery's lease: `TIDINGS_HTTP_TIMEOUT` plus
    `TIDINGS_LEASE_MARGIN` seconds) for deliveries a worker is sending right now. Calling
    it again is harmless and answers the same `cancelled_at`.
    """
    settings = request.app[SETTINGS]
    db = request.app[DB]
    wait = settings.http_timeout + settings.lease_margin
    done = await db.run(cancel.cancel, db, int(path.id), wait=wait)

    counts = await db.read(message_log.counts_of, [done.notification_id])
    return {
        "id": str(done.notification_id),
        "status": NotificationStatus.CANCELLED,
        "cancelled": done.deliveries,
        "chunks_cancelled": done.chunks,
        "cancelled_at": iso(done.cancelled_at),
        "counts": counts[done.notification_id],
    }


@routes.get("/v1/recipients")
@scope("read")
@operation(query=RecipientsQuery, responses={200: RecipientList})
async def list_recipients(request: web.Request, query: RecipientsQuery) -> dict[str, Any]:
    """Recipients in id order, by id `prefix`, spend `tier`, `activity` and interest `tag`
    (all given must hold), paged by `after`."""
    settings = request.app[SETTINGS]
    limit = query.limit or settings.page_size
    where = message_log.recipient_filter(
        settings, prefix=query.prefix, tier=query.tier, activity=query.activity, tag=query.tag
    )

    def read(session: Session) -> dict[str, Any]:
        page, following = message_log.recipients(
            session, settings, where=where, after=query.after, limit=limit
        )
        return {"items": [catalog.public(r, settings) for r in page], "next": following}

    return await request.app[DB].read(read)
