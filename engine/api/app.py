"""The aiohttp application factory: API, pages, and their shared resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from engine.api import (
    campaigns,
    event_endpoints,
    follows,
    health,
    imports,
    keys,
    links,
    management,
    message_log,
    notifications,
    openapi,
    stats,
    topics,
)
from engine.api.context import AFTERWARDS, DB, DISPATCH, KEY_CACHE, METRICS, REDIS, SETTINGS
from engine.api.keycache import KeyCache
from engine.api.middleware import auth, errors
from engine.metrics import QueueCollector
from engine.ops import console
from engine.ops.status import queue_reader
from engine.settings import Settings
from engine.store import installation
from engine.store.db import Database
from engine.store.redis_keys import RedisKeys, counters_url
from engine.worker.broker import Dispatcher, make_broker
from preferences.pages import routes

MAX_HEADER_BYTES = 65_536


def create_app(settings: Settings, *, database: Database | None = None) -> web.Application:
    """Build the application; resources open on startup and close on cleanup."""
    app = web.Application(
        middlewares=[errors, auth],
        client_max_size=settings.max_body_bytes,
        # Long header values (a 10 KB Idempotency-Key) reach the API and get its error
        # document; only a header past this is refused by the HTTP parser itself.
        handler_args={"max_line_size": MAX_HEADER_BYTES, "max_field_size": MAX_HEADER_BYTES},
    )
    app[DB] = database or Database(settings)
    app[SETTINGS] = settings = installation.bind(settings, app[DB])
    app[KEY_CACHE] = KeyCache(RedisKeys.from_settings(settings).keys_revoked)
    app[DISPATCH] = Dispatcher(make_broker(settings))
    app[METRICS] = _registry(settings)
    app[AFTERWARDS] = set()
    app.cleanup_ctx.append(_redis)
    app.on_cleanup.append(_close_db)
    modules = (
        campaigns,
        event_endpoints,
        follows,
        health,
        imports,
        keys,
        links,
        management,
        message_log,
        notifications,
        openapi,
        stats,
        topics,
    )
    for module in modules:
        app.add_routes(module.routes)
    routes.setup(app)
    console.setup(app)
    return app


def _registry(settings: Settings) -> CollectorRegistry:
    """Queue depths and dead letters, read from the broker at scrape time."""
    registry = CollectorRegistry()
    read, _ = queue_reader(settings)
    registry.register(QueueCollector(read))
    return registry


async def _redis(app: web.Application) -> AsyncIterator[None]:
    """Tidings' own Redis database (counters, supervisors' heartbeats)."""
    settings = app[SETTINGS]
    client = aioredis.Redis.from_url(counters_url(settings), socket_timeout=5)
    app[REDIS] = client
    yield
    await client.aclose()


async def _close_db(app: web.Application) -> None:
    if app[AFTERWARDS]:
        await asyncio.gather(*app[AFTERWARDS], return_exceptions=True)
    await app[KEY_CACHE].drain()
    app[DB].close()
