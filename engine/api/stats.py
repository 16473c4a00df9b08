"""`GET /v1/stats`: engagement and feedback rates per category, channel or variant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from engine.api.context import DB, scope
from engine.api.contract import operation
from engine.errors import Invalid
from engine.ops import abtest, stats
from engine.schemas import StatsOut, StatsQuery
from engine.timeutil import now

routes = web.RouteTableDef()


@routes.get("/v1/stats")
@scope("read")
@operation(query=StatsQuery, responses={200: StatsOut})
async def get_stats(request: web.Request, query: StatsQuery) -> dict[str, Any]:
    """Sent, opened, clicked, converted, unsubscribed and 👍/😕/👎 with rates, grouped `by`
    category, channel, campaign or variant, over `from`–`to` (default: the last 7 days),
    of one `category`, `campaign` or `notification` when given.

    By variant (an A/B test: filter by its notification or campaign), each row has a 95%
    Wilson interval per rate (`ci95`) and the answer says per rate whether the variants
    differ (`significant`, chi-squared p < 0.05, with `p_values`).
    """
    until = query.until or now()
    try:
        since = query.since or until - timedelta(days=7)
    except OverflowError:
        raise Invalid("to is too early to look 7 days back from", field="to") from None
    if since >= until:
        raise Invalid("from must be before to", field="from")
    items = await request.app[DB].read(
        stats.rates,
        by=query.by,
        since=since,
        until=until,
        category=query.category,
        campaign=int(query.campaign) if query.campaign else None,
        notification=int(query.notification) if query.notification else None,
    )
    body: dict[str, Any] = {
        "by": query.by,
        "from": since.isoformat(),
        "to": until.isoformat(),
        "items": items,
    }
    if query.by == "variant":
        test = abtest.compare(items)
        for item, interval in zip(items, test["ci95"], strict=True):
            item["ci95"] = interval
        body["significant"] = test["significant"]
        body["p_values"] = test["p_values"]
    return body
