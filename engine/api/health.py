"""Liveness, readiness (SQL and Redis answer) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from engine.api.context import DB, METRICS, REDIS

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_: web.Request) -> web.Response:
    """The process is up."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when both SQL and Redis answer; 503 naming what does not."""
    checks: dict[str, str] = {}

    def sql() -> None:
        with request.app[DB].engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(request.app[DB].run(sql), timeout=3)
        checks["sql"] = "ok"
    except Exception as exc:
        checks["sql"] = f"error: {type(exc).__name__}"
    try:
        await asyncio.wait_for(request.app[REDIS].ping(), timeout=3)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: this process's metrics plus queue depths and dead letters."""

    def scrape() -> bytes:
        return generate_latest(REGISTRY) + generate_latest(request.app[METRICS])

    response = web.Response(body=await request.app[DB].run(scrape))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
