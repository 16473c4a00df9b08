"""`GET /v1/stats`: engagement and feedback rates per category, channel or variant."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.api.context import DB, scope
from engine.api.contract import operation
from engine.errors import Invalid
from engine.ops import abtest, stats
from engine.pipeline import winner
from engine.schemas.answers import StatsOut
from engine.schemas.params import StatsQuery
from engine.store.models import Notification
from engine.timeutil import now

routes = web.RouteTableDef()


@routes.get("/v1/stats")
@scope("read")
@operation(query=StatsQuery, responses={200: StatsOut})
async def get_stats(request: web.Request, query: StatsQuery) -> dict[str, Any]:
    """Sent, opened, clicked, converted, unsubscribed and 👍/😕/👎 with rates, grouped `by`
    category, channel, campaign or variant, over `from`–`to` (default: the last 7 days),
    of one `category`, `campaign` or `notification` when given. An unsubscribe counts
    against the one message whose unsubscribe link was used, and against none when it
    was made elsewhere.

    By variant (an A/B test: filter by its notification or campaign), each row has a 95%
    Wilson interval per rate (`ci95`) and the answer says per rate whether the variants
    differ (`significant`, chi-squared p < 0.05, with `p_values`); for a notification with
    a test slice, `ab_test` has its winner and the slice's figures it was chosen on.
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
        if query.notification:
            found = await request.app[DB].read(_ab_test, int(query.notification))
            if found is not None:
                body["ab_test"] = found
    return body


def _ab_test(session: Session, notification_id: int) -> dict[str, Any] | None:
    row = session.get(Notification, notification_id)
    return winner.view(row) if row is not None else None
