"""Campaigns API: a promotion with an event time, sent in steps on the "3-2-1" rhythm."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import Reply, operation
from engine.api.notifications import REPLAYED, keyed, recipient_writes, replayed
from engine.pipeline import campaigns
from engine.schemas.campaigns import CampaignIn, CampaignList, CampaignOut, CampaignPage
from engine.schemas.params import IdempotencyHeaders, RowPath

routes = web.RouteTableDef()


@routes.post("/v1/campaigns")
@scope("send")
@operation(
    headers=IdempotencyHeaders,
    body=CampaignIn,
    responses={202: CampaignOut},
    response_headers={202: REPLAYED},
)
async def post_campaign(
    request: web.Request, headers: IdempotencyHeaders, body: CampaignIn
) -> Reply:
    """Create a campaign: one notification per step (default "3-2-1": 3 days, 2 days and
    1 hour before `event_at`), each released by the scheduler at its time.

    A recipient who clicks or converts on a step gets no further steps; a step held by
    quiet hours, a pause or a cap until the event or later ends `suppressed/expired`.
    422 names `event_at` when the event has passed and `steps` when every step has.
    A retry with the same `Idempotency-Key` (header or field) and request answers the
    first campaign, as it is now; the same key with another request is a 422.
    """
    spec = keyed(body, headers)
    recipient_writes(request, [spec.notification()], batch=False)
    db = request.app[DB]
    created, again = await db.run(campaigns.submit, db, spec, settings=request.app[SETTINGS])
    return replayed(created, again)


@routes.get("/v1/campaigns")
@scope("read")
@operation(query=CampaignPage, responses={200: CampaignList})
async def list_campaigns(request: web.Request, query: CampaignPage) -> dict[str, Any]:
    """Campaigns, newest first, with each step's status (paged by `before`)."""
    limit = query.limit or request.app[SETTINGS].page_size
    before = int(query.before) if query.before else None
    return await request.app[DB].read(campaigns.page, before=before, limit=limit)


@routes.get("/v1/campaigns/{id}")
@scope("read")
@operation(path=RowPath, responses={200: CampaignOut})
async def get_campaign(request: web.Request, path: RowPath) -> dict[str, Any]:
    """A campaign: each step's time, status, deliveries per status and funnel, and the
    campaign's funnel over distinct recipients (sent → opened → clicked → converted,
    and `stopped`: left out of later steps after a click or conversion)."""
    return await request.app[DB].read(campaigns.view, int(path.id))


@routes.post("/v1/campaigns/{id}/cancel")
@scope("send")
@operation(
    path=RowPath,
    responses={200: CampaignOut},
    errors={409: "Every step is done (`finished`): nothing is left to cancel."},
)
async def cancel_campaign(request: web.Request, path: RowPath) -> dict[str, Any]:
    """Cancel what the campaign has not sent: later steps never go, waiting deliveries
    end `suppressed/cancelled`. Nothing of it is sent after this answer: like a
    notification's cancel, the answer waits (at most a delivery's lease:
    `TIDINGS_HTTP_TIMEOUT` plus `TIDINGS_LEASE_MARGIN` seconds) for deliveries a worker is
    sending right now. Cancelling again answers the cancelled campaign."""
    settings = request.app[SETTINGS]
    db = request.app[DB]
    wait = settings.http_timeout + settings.lease_margin
    return await db.run(campaigns.cancel, db, int(path.id), wait=wait)
