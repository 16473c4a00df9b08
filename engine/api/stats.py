"""`GET /v1/stats`: engagement and feedback rates per category, channel or variant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from engine.api.context import DB, scope
from engine.api.contract import operation
from engine.errors import Invalid
from engine.ops import stats
from engine.schemas import StatsOut, StatsQuery
from engine.timeutil import now

routes = web.RouteTableDef()


@routes.get("/v1/stats")
@scope("read")
@operation(query=StatsQuery, responses={200: StatsOut})
async def get_stats(request: web.Request, query: StatsQuery) -> dict[str, Any]:
    """Sent, opened, clicked, converted and 👍/😕/👎 with rates, grouped `by` category,
    channel or variant, over `from`–`to` (default: the last 7 days)."""
    until = query.until or now()
    try:
        since = query.since or until - timedelta(days=7)
    except OverflowError:
        raise Invalid("to is too early to look 7 days back from", field="to") from None
    if since >= until:
        raise Invalid("from must be before to", field="from")
    items = await request.app[DB].read(stats.rates, by=query.by, since=since, until=until)
    return {"by": query.by, "from": since.isoformat(), "to": until.isoformat(), "items": items}
