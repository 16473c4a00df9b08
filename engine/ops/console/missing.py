"""The console's own not-found page for any `/console/…` address no page answers: a 404
in the reader's language, with the console's navigation when someone is signed in."""

from __future__ import annotations

from aiohttp import web

from engine.ops.console import session
from engine.ops.console.web import ROOT, Desk, Refused, language, refusal, signed_in

routes = web.RouteTableDef()


@routes.get(f"{ROOT}/{{tail:.*}}")
async def not_found(request: web.Request) -> web.Response:
    """Added after every other console route, so it answers only what none of them does."""
    t = language(request)
    try:
        desk: Desk | None = Desk(request, await signed_in(request), t)
    except session.SignedOut:
        desk = None
    return refusal(request, t, Refused("not_found"), desk=desk)
