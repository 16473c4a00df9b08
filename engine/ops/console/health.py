"""The health page: the same figures as `tidings status`, read by the same function."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from engine.ops import status
from engine.ops.console.web import ROOT, Desk, console_page

routes = web.RouteTableDef()


@routes.get(f"{ROOT}/health")
@console_page()
async def health(desk: Desk) -> web.Response:
    """Queue depths, in flight, delayed, dead letters, the last minute's throughput,
    delivery states, the supervised processes and the scheduler's last run."""
    snapshot = await desk.db.run(status.snapshot, desk.settings, database=desk.db)
    ran = snapshot["scheduler"].get("last_run")
    context = {
        "section": "health",
        "snap": snapshot,
        "scheduler_ran": datetime.fromisoformat(ran) if ran else None,
    }
    return desk.render("health.html", context)
