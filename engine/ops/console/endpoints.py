"""The event endpoints page: where delivery events are pushed, whether each endpoint is
paused and why, its failures in a row and backlog, and a button to resume it, which
does what `POST /v1/event-endpoints/{id}/resume` does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from engine.ops import event_endpoints
from engine.ops.console.web import ROOT, Desk, console_page, redirect, row_id

routes = web.RouteTableDef()


def _moment(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


@routes.get(f"{ROOT}/endpoints")
@console_page()
async def endpoints(desk: Desk) -> web.Response:
    """Every endpoint as `GET /v1/event-endpoints` lists it, paused ones with their reason."""
    shown: list[dict[str, Any]] = await desk.db.read(event_endpoints.listing)
    for endpoint in shown:
        endpoint["paused_moment"] = _moment(endpoint["paused_at"])
        endpoint["success_moment"] = _moment(endpoint["last_success_at"])
    context = {
        "section": "endpoints",
        "endpoints": shown,
        "resumed": desk.request.query.get("resumed"),
    }
    return desk.render("endpoints.html", context)


@routes.post(f"{ROOT}/endpoints/{{id}}/resume")
@console_page(form=True)
async def resume(desk: Desk) -> web.Response:
    """Post to a paused endpoint again: its waiting and given-up batches go at once.
    Resuming an active endpoint changes nothing but its failures in a row."""
    endpoint_id = row_id(desk.request.match_info["id"], "id")
    await desk.db.write(event_endpoints.resume, endpoint_id)
    return redirect(desk.href(f"{ROOT}/endpoints", resumed=endpoint_id))
