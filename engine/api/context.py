"""Typed application keys and the per-route scope marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CollectorRegistry

from engine.api.keycache import KeyCache
from engine.settings import Settings
from engine.store.db import Database
from engine.worker.broker import Dispatcher

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", aioredis.Redis)
KEY_CACHE = web.AppKey("key_cache", KeyCache)
DISPATCH = web.AppKey("dispatch", Dispatcher)
METRICS = web.AppKey("metrics", CollectorRegistry)
# The scopes of the request's API key, for a handler whose input asks for more.
KEY_SCOPES = web.RequestKey("key_scopes", frozenset)
# Bookkeeping writes that run after the answer has gone out; awaited on shutdown.
AFTERWARDS = web.AppKey("afterwards", set)

F = TypeVar("F", bound=Callable[..., Any])


def scope(name: str) -> Callable[[F], F]:
    """Mark a handler as needing an API key with scope `name` (`admin` passes everything)."""

    def mark(handler: F) -> F:
        handler.__dict__["tidings_scope"] = name
        return handler

    return mark


def scope_of(handler: Any) -> str | None:
    return getattr(handler, "tidings_scope", None)
