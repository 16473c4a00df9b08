"""Management API: categories, recipients and their preferences."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlmodel import Session, col, select

from engine import categories, recipients
from engine.api.context import DB, SETTINGS, scope
from engine.api.middleware import json_body, path_key, validation_error
from engine.errors import Invalid, NotFound
from engine.models import Category, Recipient
from engine.outbound import outbound_policy
from engine.schemas import CategoryIn, PreferencesIn, RecipientBulkItem, RecipientIn
from engine.settings import Settings
from preferences import store

routes = web.RouteTableDef()


@routes.put("/v1/categories/{key}")
@scope("admin")
async def put_category(request: web.Request) -> web.Response:
    """Define or replace a category: routing, caps, collapse and templates."""
    key = path_key(request, "key")
    spec = CategoryIn.model_validate(await json_body(request))

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return categories.public(categories.upsert(session, key, spec))

    return web.json_response(await request.app[DB].run(write))


@routes.get("/v1/categories")
@scope("read")
async def list_categories(request: web.Request) -> web.Response:
    """Every category, by key."""

    def read() -> list[dict[str, Any]]:
        with request.app[DB].session() as session:
            rows = session.exec(select(Category).order_by(col(Category.key)))
            return [categories.public(c) for c in rows]

    return web.json_response({"items": await request.app[DB].run(read)})


@routes.get("/v1/categories/{key}")
@scope("read")
async def get_category(request: web.Request) -> web.Response:
    """One category."""
    key = path_key(request, "key")

    def read() -> dict[str, Any] | None:
        with request.app[DB].session() as session:
            row = session.get(Category, key)
            return categories.public(row) if row else None

    found = await request.app[DB].run(read)
    if found is None:
        raise NotFound(f"no category {key!r}", field="key")
    return web.json_response(found)


@routes.put("/v1/recipients/{id}")
@scope("admin")
async def put_recipient(request: web.Request) -> web.Response:
    """Create or update a recipient; keys left out keep their value."""
    rid = path_key(request, "id")
    changes = RecipientIn.model_validate(await json_body(request))
    settings = request.app[SETTINGS]
    _check_outbound(changes, settings, "webhook_url")

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return recipients.public(recipients.upsert(session, rid, changes), settings)

    return web.json_response(await request.app[DB].run(write))


@routes.post("/v1/recipients/bulk")
@scope("admin")
async def bulk_recipients(request: web.Request) -> web.Response:
    """Upsert many recipients in one transaction: all of them, or none if one is invalid."""
    body = await json_body(request)
    settings = request.app[SETTINGS]
    items = body.get("recipients") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise Invalid("send {'recipients': [...]}", field="recipients")
    if len(items) > settings.max_bulk_recipients:
        raise Invalid(
            f"at most {settings.max_bulk_recipients} recipients per call", field="recipients"
        )
    parsed: list[tuple[str, RecipientIn]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            entry = RecipientBulkItem.model_validate(item)
        except ValidationError as exc:
            error = validation_error(exc)
            whole = error.field in (None, "body")  # the entry itself is not an object
            error.field = f"recipients.{index}" if whole else f"recipients.{index}.{error.field}"
            raise error from None
        _check_outbound(entry, settings, f"recipients.{index}.webhook_url")
        if entry.id in seen:
            raise Invalid(f"recipient {entry.id!r} is listed twice", field=f"recipients.{index}.id")
        seen.add(entry.id)
        parsed.append((entry.id, entry))

    def write() -> int:
        with request.app[DB].session() as session:
            return len(recipients.upsert_many(session, parsed))

    return web.json_response({"upserted": await request.app[DB].run(write)})


def _check_outbound(changes: RecipientIn, settings: Settings, field: str) -> None:
    """Refuse a webhook URL into the private network unless the operator allowed it."""
    if changes.webhook_url and (reason := outbound_policy(settings).refusal(changes.webhook_url)):
        raise Invalid(f"webhook_url is not reachable: {reason}", field=field)


def _recipient(session: Session, rid: str) -> Recipient:
    row = session.get(Recipient, rid)
    if row is None:
        raise NotFound(f"no recipient {rid!r}", field="id")
    return row


@routes.get("/v1/recipients/{id}")
@scope("read")
async def get_recipient(request: web.Request) -> web.Response:
    """A recipient with derived `tier` and `activity`."""
    rid = path_key(request, "id")
    settings = request.app[SETTINGS]

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            return recipients.public(_recipient(session, rid), settings)

    return web.json_response(await request.app[DB].run(read))


@routes.delete("/v1/recipients/{id}")
@scope("admin")
async def delete_recipient(request: web.Request) -> web.Response:
    """Erase a recipient: contact points, preferences and message copy are removed."""
    rid = path_key(request, "id")

    def erase() -> bool:
        with request.app[DB].session() as session:
            return recipients.erase(session, rid)

    if not await request.app[DB].run(erase):
        raise NotFound(f"no recipient {rid!r}", field="id")
    return web.json_response({"id": rid, "erased": True})


@routes.get("/v1/recipients/{id}/preferences")
@scope("read")
async def get_preferences(request: web.Request) -> web.Response:
    """A recipient's preferences with every default resolved."""
    rid = path_key(request, "id")
    settings = request.app[SETTINGS]

    def read() -> dict[str, Any]:
        with request.app[DB].session() as session:
            prefs = store.load_one(session, _recipient(session, rid), settings=settings)
            return store.document(prefs, list(store.load_categories(session).values()))

    return web.json_response(await request.app[DB].run(read))


@routes.put("/v1/recipients/{id}/preferences")
@scope("admin")
async def put_preferences(request: web.Request) -> web.Response:
    """Change a recipient's preferences; keys left out keep their value."""
    rid = path_key(request, "id")
    changes = PreferencesIn.model_validate(await json_body(request))
    settings = request.app[SETTINGS]

    def write() -> dict[str, Any]:
        with request.app[DB].session() as session:
            recipient = _recipient(session, rid)
            cats = store.load_categories(session)
            store.update(session, rid, changes, categories=cats)
            session.flush()
            prefs = store.load_one(session, recipient, settings=settings)
            return store.document(prefs, list(cats.values()))

    return web.json_response(await request.app[DB].run(write))
