"""The message log: notifications newest first, filterable; a notification's page with its
counts, funnel and paged deliveries (with their history and errors); and cancelling it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.ops import stats
from engine.ops.console.web import ROOT, Desk, Refused, console_page
from engine.pipeline import accept

routes = web.RouteTableDef()
PAGE = 50
# While these remain, the page reloads itself to show deliveries settling.
SETTLING_NOTIFICATION = ("accepted", "planning")
SETTLING_DELIVERY = ("queued", "sending")


def _row_id(raw: str, field: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise Refused("invalid", field=field, message="expected a whole number such as 42")
    return int(raw)


@routes.get(f"{ROOT}/messages/{{id}}")
@console_page()
async def notification(desk: Desk) -> web.Response:
    """One notification: status, counts per delivery status, the funnel, and a page of
    deliveries (`?after=` the last delivery id shown) with their history and errors."""
    nid = _row_id(desk.request.match_info["id"], "id")
    raw_after = desk.request.query.get("after", "")
    after = _row_id(raw_after, "after") if raw_after else None

    def read() -> dict[str, Any]:
        with desk.db.session() as session:
            return accept.status(session, nid, after=after, limit=PAGE)

    shown = await desk.db.run(read)
    counts = shown["counts"]
    settling = shown["status"] in SETTLING_NOTIFICATION or any(
        counts.get(s) for s in SETTLING_DELIVERY
    )
    context = {
        "section": "messages",
        "n": shown,
        "funnel": stats.funnel(counts),
        "deliveries": {"items": shown["deliveries"], "next": shown["next"]},
        "settling": settling,
        "just_sent": desk.request.query.get("sent") == "1",
    }
    return desk.render("notification.html", context)
