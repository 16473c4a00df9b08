"""Middleware: every error becomes JSON, and every `/v1` call needs a scoped API key."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel, TypeAdapter, ValidationError

from engine.api.context import DB, KEY_CACHE, KEY_SCOPES, REDIS, scope_of
from engine.api.errors import HttpError, Unauthorized, Unavailable, error_response
from engine.errors import FieldError, Forbidden, Invalid, TidingsError

# The request documents `_MODELS` knows by name, loaded before it is built.
from engine.schemas import catalog, notifications, params, preferences  # noqa: F401
from engine.schemas.common import MAX_BODY_DEPTH, Key, Strict, json_problem
from engine.store.outages import sql_unreachable

log = logging.getLogger("tidings.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY = TypeAdapter(Key)
RETRY_AFTER = 5  # seconds a client waits before retrying while the database is down


# Paths of the recipient's pages and the ops console, which answer errors with pages.
PAGES = ("/p/", "/u/", "/inbox/", "/assets/", "/console")


def invalid_json(reason: str) -> HttpError:
    return HttpError(
        f"the body is not valid JSON: {reason}", status=400, code="invalid_json", field="body"
    )


def validation_error(exc: ValidationError) -> Invalid:
    """The first pydantic error as an `Invalid` naming its field as the API does.

    The path leaves out pydantic's own steps (union tags, `[key]`); the message says
    what is expected there, read from the model's published JSON schema.
    """
    first = exc.errors()[0]
    original = (first.get("ctx") or {}).get("error")
    loc = [part for part in first["loc"] if not _internal(part)]
    if isinstance(original, FieldError):
        return Invalid(original.message, field=_joined([str(p) for p in loc], original.field))
    path = ".".join(str(part) for part in loc) or "body"
    message = first["msg"].removeprefix("Value error, ")
    kind = first["type"]
    model = _MODELS.get(exc.title)
    if kind == "extra_forbidden":
        fields = _expected(model, loc[:-1], fields_only=True) if model else None
        message = f"unknown field; the fields here are {fields}" if fields else "unknown field"
    elif kind == "missing":
        message = "this field is required"
    elif (
        kind not in ("literal_error", "enum", "value_error", "assertion_error", "audience")
        and model
        and (expected := _expected(model, loc))
    ):
        message = f"{message}; expected {expected}"
    return Invalid(message, field=path)


def _joined(where: list[str], field: str) -> str:
    """A `FieldError`'s field under the path where its model sits (`recipients.3` and
    `email`), where the field may repeat the path's end (`data` and `data.n`)."""
    parts = field.split(".")
    overlap = max(
        (k for k in range(min(len(where), len(parts)) + 1) if where[len(where) - k :] == parts[:k]),
        default=0,
    )
    return ".".join([*where, *parts[overlap:]]) or "body"


def _internal(part: str | int) -> bool:
    """A step of pydantic's error path that is not a field: `[key]`, the tag of a union's
    form (`to.@segment.segment.tier`), a validator's name (`function-after[...]`)."""
    return isinstance(part, str) and (part.startswith("@") or "[" in part)


def _all_models(base: type[BaseModel]) -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for sub in base.__subclasses__():
        found[sub.__name__] = sub
        found.update(_all_models(sub))
    return found


_MODELS = _all_models(Strict)


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _expected(
    model: type[BaseModel], loc: list[str | int], *, fields_only: bool = False
) -> str | None:
    """What the published schema expects at `loc`, in a few words."""
    root = _schema(model)
    defs = root.get("$defs", {})

    def resolve(node: Any, step: str | int | None = None) -> Any:
        """Follow `$ref`s; of a union, take the member that fits the next step."""
        while isinstance(node, dict):
            if "$ref" in node:
                node = defs.get(node["$ref"].rsplit("/", 1)[-1])
                continue
            options = node.get("anyOf") or node.get("oneOf")
            if not options:
                return node
            members = [o for o in options if o.get("type") != "null"]
            if len(members) == 1:
                node = members[0]
                continue
            if step is None:
                return node
            members = [resolve(m) for m in members]
            fits = [
                m
                for m in members
                if (isinstance(step, int) and m.get("type") == "array")
                or (isinstance(step, str) and step in m.get("properties", {}))
            ]
            return fits[0] if fits else members[0]
        return node

    node: Any = root
    for step in loc:
        node = resolve(node, step)
        if not isinstance(node, dict):
            return None
        if isinstance(step, int):
            node = node.get("items")
        else:
            node = node.get("properties", {}).get(step) or node.get("additionalProperties")
    node = resolve(node)
    if not isinstance(node, dict):
        return None
    if fields_only:
        names = list(node.get("properties", {}))
        return ", ".join(names) if names else None
    return _describe(resolve, node)


def _describe(resolve: Callable[[Any], Any], node: dict[str, Any]) -> str | None:
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    kind = node.get("type")
    if kind == "array":
        items = resolve(node.get("items", {}))
        inner = _describe(resolve, items) if isinstance(items, dict) else None
        return f"a list of {inner}" if inner else "a list"
    if kind == "object" and node.get("properties"):
        return "an object with the fields " + ", ".join(node["properties"])
    if isinstance(kind, str):
        return {"string": "text", "integer": "a whole number", "number": "a number"}.get(
            kind, f"a {kind}"
        )
    if options := node.get("anyOf") or node.get("oneOf"):
        described = [d for o in options if (d := _describe(resolve, resolve(o)))]
        return " or ".join(described) if described else None
    return None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every failure as JSON; a bug is a 500 that never leaks internals.

    The recipient's pages answer with pages of their own; everything else, found or
    not, answers with the API's error document.
    """
    try:
        return await handler(request)
    except (TidingsError, HttpError) as exc:
        return error_response(exc)
    except ValidationError as exc:
        return error_response(validation_error(exc))
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            HttpError("the request body is too large", status=413, code="too_large", field="body")
        )
    except web.HTTPMethodNotAllowed as exc:
        if request.path.startswith(PAGES):
            raise
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(
            HttpError(
                f"{request.method} is not allowed here; use {allowed}",
                status=405,
                code="method_not_allowed",
            ),
            headers={"Allow": allowed},
        )
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith(PAGES):
            raise
        code = {404: "not_found"}.get(exc.status, "http_error")
        return error_response(HttpError(exc.reason, status=exc.status, code=code))
    except json.JSONDecodeError as exc:
        return error_response(invalid_json(exc.msg))
    except Exception as exc:
        if sql_unreachable(exc):  # a client retries; what it sent before is not lost
            log.warning("the database is not answering on %s %s", request.method, request.path)
            return error_response(
                Unavailable("the database is not answering; retry shortly"),
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(HttpError("internal error", status=500, code="internal"))


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the bearer key and the scope the route asks for."""
    needed = scope_of(handler)
    if needed is None:
        return await handler(request)
    # The scheme name is case-insensitive (RFC 7235 section 2.1): "bearer" is "Bearer".
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized(
            "send an API key as 'Authorization: Bearer <key>'", field="Authorization"
        )
    scopes = await _scopes(request.app, credentials.strip())
    if scopes is None:
        raise Unauthorized("unknown or revoked API key", field="Authorization")
    if needed not in scopes and "admin" not in scopes:
        raise Forbidden(f"this call needs a key with the {needed!r} scope", field="Authorization")
    request[KEY_SCOPES] = scopes
    return await handler(request)


async def _scopes(app: web.Application, plain: str) -> frozenset[str] | None:
    return await app[KEY_CACHE].scopes(plain, db=app[DB], redis=app[REDIS])


async def json_body(request: web.Request) -> Any:
    """The request's JSON body.

    A `Content-Type` other than JSON in UTF-8 (`application/json`, `…+json`) is `415
    unsupported_media_type`; none at all is read as JSON. Empty or unparseable
    (including `NaN` and invalid UTF-8) is `400 invalid_json`; text or numbers no column
    can store, or nesting past `MAX_BODY_DEPTH`, a 422 naming where.
    """
    given = request.headers.get("Content-Type")
    media = request.content_type
    charset = (request.charset or "utf-8").lower()
    if given is not None and (
        not (media == "application/json" or media.endswith("+json"))
        or charset.replace("_", "-") not in ("utf-8", "utf8")
    ):
        raise HttpError(
            f"send JSON as 'Content-Type: application/json' (UTF-8), not {given!r}",
            status=415,
            code="unsupported_media_type",
            field="Content-Type",
        )
    try:
        raw = await request.read()
    except (RequestPayloadError, PayloadEncodingError):  # the encoding does not decode
        encoding = request.headers.get("Content-Encoding", "")
        raise HttpError(
            f"the body does not decode as its Content-Encoding ({encoding!r}) says",
            status=400,
            code="invalid_body",
            field="Content-Encoding",
        ) from None
    if not raw:
        raise invalid_json("a JSON body is required")
    overflow: list[str] = []

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value):  # 1e400: valid JSON, but no double holds it
            overflow.append(text)
        return value

    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=number)
    except json.JSONDecodeError as exc:
        raise invalid_json(exc.msg) from None
    except ValueError as exc:  # invalid UTF-8, NaN / Infinity
        raise invalid_json(str(exc)) from None
    except RecursionError:
        raise Invalid(f"nested more than {MAX_BODY_DEPTH} levels deep", field="body") from None
    # The storing codec checks the whole document at C speed; only a refusal is walked.
    try:
        orjson.dumps(body)
        clean = b"\\u0000" not in raw and not overflow
    except orjson.JSONEncodeError:
        clean = False
    if not clean and (problem := json_problem(body, max_depth=MAX_BODY_DEPTH)):
        raise Invalid(problem[1], field=problem[0])
    return body


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")
