"""Middleware: every error becomes JSON, and every `/v1` call needs a scoped API key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from engine import keys
from engine.api.context import DB, KEY_CACHE, scope_of
from engine.errors import ApiError, Forbidden, Invalid, Unauthorized
from engine.schemas import FieldError

log = logging.getLogger("tidings.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY_CACHE_SECONDS = 30.0


def error_response(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


def validation_error(exc: ValidationError) -> ApiError:
    """The first pydantic error as an `Invalid` naming its field (dotted path)."""
    first = exc.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    if isinstance(original, FieldError):
        return Invalid(original.message, field=original.field)
    # A bad dict key is reported at `...key.[key]`: name the key itself.
    # A tagged union's location names the form taken (`to.@segment.segment.tier`): skip it.
    parts = (str(part) for part in first["loc"] if part != "[key]")
    path = ".".join(p for p in parts if not p.startswith("@")) or "body"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field"
    elif first["type"] == "missing":
        message = "this field is required"
    return Invalid(message, field=path)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as JSON; a bug is a 500 that never leaks internals."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except ValidationError as exc:
        return error_response(validation_error(exc))
    except FieldError as exc:
        return error_response(Invalid(exc.message, field=exc.field))
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            ApiError("the request body is too large", status=413, code="too_large", field="body")
        )
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith(("/v1", "/healthz", "/readyz")):
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        return error_response(ApiError(exc.reason, status=exc.status, code=code))
    except json.JSONDecodeError as exc:
        return error_response(Invalid(f"the body is not valid JSON: {exc.msg}", field="body"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError("internal error", status=500, code="internal"))


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the bearer key and the scope the route asks for."""
    needed = scope_of(handler)
    if needed is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'", field="Authorization"
        )
    scopes = await _scopes(request.app, header[7:].strip())
    if scopes is None:
        raise Unauthorized("unknown or revoked API key", field="Authorization")
    if needed not in scopes and "admin" not in scopes:
        raise Forbidden(f"this call needs a key with the {needed!r} scope", field="Authorization")
    return await handler(request)


async def _scopes(app: web.Application, plain: str) -> frozenset[str] | None:
    cache: dict[str, tuple[float, frozenset[str] | None]] = app[KEY_CACHE]
    digest = keys.digest(plain)
    hit = cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]

    def lookup() -> frozenset[str] | None:
        with app[DB].session() as session:
            row = keys.find(session, plain)
            return frozenset(row.scopes) if row else None

    scopes = await app[DB].run(lookup)
    cache[digest] = (time.monotonic() + KEY_CACHE_SECONDS, scopes)
    return scopes


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; an empty or non-JSON body is a 4xx naming `body`."""
    raw = await request.read()
    if not raw:
        raise Invalid("a JSON body is required", field="body")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(f"the body is not valid JSON: {exc}", field="body") from None
    except RecursionError:
        raise Invalid("the body is nested too deeply", field="body") from None
    if b"\\u0000" in raw and (where := _nul_at(body)) is not None:
        raise Invalid("text cannot contain NUL characters", field=where)
    return body


def _nul_at(body: Any) -> str | None:
    """The dotted path of a string (or key) holding a NUL, which SQL text columns refuse."""
    pending: list[tuple[str, Any]] = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            if isinstance(value, str) and "\x00" in value:
                return path or "body"
            continue
        for key, item in items:
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here
            pending.append((here, item))
    return None
