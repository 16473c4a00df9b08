"""Liveness, readiness (SQL and Redis answer; which worker processes run and when one
last restarted) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pika
import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from engine.api.context import DB, METRICS, REDIS, SETTINGS
from engine.api.contract import Reply, operation
from engine.ops import supervisor
from engine.schemas.answers import HealthOut, PrometheusText, ReadyOut
from engine.store.redis_keys import RedisKeys
from engine.worker.broker import broker_url, is_rabbitmq

routes = web.RouteTableDef()


@routes.get("/healthz")
@operation(responses={200: HealthOut})
async def healthz(_: web.Request) -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok"}


@routes.get("/readyz")
@operation(responses={200: ReadyOut, 503: ReadyOut})
async def readyz(request: web.Request) -> Reply:
    """Ready when SQL and Redis answer (and RabbitMQ, when it carries the queues); 503
    naming what does not.

    `processes` tells what the supervisors (`tidings worker`, `tidings up`) run: how many
    processes, how many restarts, and the last one (which, when, how it ended). It is
    information, not a condition: the API accepts work while a worker restarts.
    """
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
    url = broker_url(request.app[SETTINGS])
    if is_rabbitmq(url):
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(None, _amqp_ping, url), timeout=3)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "unavailable", "checks": checks}
    if checks["redis"] == "ok":
        try:
            keys = RedisKeys.from_settings(request.app[SETTINGS])
            body["processes"] = await asyncio.wait_for(_processes(request.app[REDIS], keys), 3)
        except Exception as exc:
            body["processes"] = {"error": type(exc).__name__}
    return Reply(body, status=200 if ready else 503)


def _amqp_ping(url: str) -> None:
    parameters = pika.URLParameters(url)
    parameters.socket_timeout = parameters.blocked_connection_timeout = 2
    pika.BlockingConnection(parameters).close()


async def _processes(client: aioredis.Redis, keys: RedisKeys) -> dict[str, Any]:
    views = []
    async for key in client.scan_iter(keys.processes, count=1000):
        raw = await client.get(key)
        if raw:
            views.append(json.loads(raw))
    return supervisor.summary(views)


@routes.get("/metrics")
@operation(responses={200: PrometheusText}, media_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition: this process's metrics plus queue depths and dead letters."""

    def scrape() -> bytes:
        return generate_latest(REGISTRY) + generate_latest(request.app[METRICS])

    response = web.Response(body=await request.app[DB].run(scrape))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response
