"""`GET /v1/stats`: engagement and feedback rates per category, channel or variant."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from engine import stats
from engine.api.context import DB, scope
from engine.errors import Invalid
from engine.timeutil import now

routes = web.RouteTableDef()


def _time(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(f"{raw!r} is not an ISO 8601 time", field=name) from None
    if value.tzinfo is None:
        raise Invalid("give the time with its offset, like 2026-11-20T00:00:00+08:00", field=name)
    return value


@routes.get("/v1/stats")
@scope("read")
async def get_stats(request: web.Request) -> web.Response:
    """Sent, opened, clicked, converted and 👍/😕/👎 with rates, grouped `by` category,
    channel or variant, over `from`–`to` (default: the last 7 days)."""
    by = request.query.get("by", "category")
    if by not in stats.GROUPS:
        raise Invalid(f"by is one of {', '.join(stats.GROUPS)}", field="by")
    until = _time(request, "to", now())
    since = _time(request, "from", until - timedelta(days=7))
    if since >= until:
        raise Invalid("from must be before to", field="from")

    def read() -> list[dict[str, Any]]:
        with request.app[DB].session() as session:
            return stats.rates(session, by=by, since=since, until=until)

    items = await request.app[DB].run(read)
    return web.json_response(
        {"by": by, "from": since.isoformat(), "to": until.isoformat(), "items": items}
    )
