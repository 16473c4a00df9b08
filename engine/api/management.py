"""Management API: categories (`admin`), recipients and their preferences (`recipients`
to write, `read` to read)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session, col, select

from channels.outbound import outbound_policy
from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import operation
from engine.catalog import categories, recipients
from engine.errors import Invalid, NotFound
from engine.schemas.answers import (
    CategoryList,
    CategoryOut,
    ErasedOut,
    PreferencesOut,
    RecipientOut,
    UpsertedOut,
)
from engine.schemas.catalog import CategoryIn, RecipientIn, RecipientPatch, RecipientsBulkIn
from engine.schemas.params import KeyPath, RecipientPath
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store.models import Category, Recipient
from preferences import store

routes = web.RouteTableDef()


@routes.put("/v1/categories/{key}")
@scope("admin")
@operation(path=KeyPath, body=CategoryIn, responses={200: CategoryOut})
async def put_category(request: web.Request, path: KeyPath, body: CategoryIn) -> dict[str, Any]:
    """Define or replace a category: routing, caps, collapse and templates."""

    def write(session: Session) -> dict[str, Any]:
        return categories.public(categories.upsert(session, path.key, body))

    return await request.app[DB].write(write)


@routes.get("/v1/categories")
@scope("read")
@operation(responses={200: CategoryList})
async def list_categories(request: web.Request) -> dict[str, Any]:
    """Every category, by key."""

    def read(session: Session) -> list[dict[str, Any]]:
        rows = session.exec(select(Category).order_by(col(Category.key)))
        return [categories.public(c) for c in rows]

    return {"items": await request.app[DB].read(read)}


@routes.get("/v1/categories/{key}")
@scope("read")
@operation(path=KeyPath, responses={200: CategoryOut})
async def get_category(request: web.Request, path: KeyPath) -> dict[str, Any]:
    """One category."""

    def read(session: Session) -> dict[str, Any] | None:
        row = session.get(Category, path.key)
        return categories.public(row) if row else None

    found = await request.app[DB].read(read)
    if found is None:
        raise NotFound(f"no category {path.key!r}", field="key")
    return found


@routes.put("/v1/recipients/{id}")
@scope("recipients")
@operation(path=RecipientPath, body=RecipientIn, responses={200: RecipientOut})
async def put_recipient(
    request: web.Request, path: RecipientPath, body: RecipientIn
) -> dict[str, Any]:
    """Create or update a recipient; keys left out keep their value."""
    settings = request.app[SETTINGS]
    check_outbound(body, settings, "webhook_url")

    def write(session: Session) -> dict[str, Any]:
        return recipients.public(recipients.upsert(session, path.id, body), settings)

    return await request.app[DB].write(write)


@routes.patch("/v1/recipients/{id}")
@scope("recipients")
@operation(path=RecipientPath, body=RecipientPatch, responses={200: RecipientOut})
async def patch_recipient(
    request: web.Request, path: RecipientPath, body: RecipientPatch
) -> dict[str, Any]:
    """Change some of a recipient's fields with a JSON merge patch (RFC 7386): as `PUT`,
    but `attributes` merge into the stored ones name by name (null removes one) instead
    of replacing them. 404 (field `id`) for an unknown recipient."""
    settings = request.app[SETTINGS]
    check_outbound(body, settings, "webhook_url")

    def write(session: Session) -> dict[str, Any] | None:
        row = recipients.patch(session, path.id, body)
        return recipients.public(row, settings) if row is not None else None

    found = await request.app[DB].write(write)
    if found is None:
        raise NotFound(f"no recipient {path.id!r}", field="id")
    return found


@routes.post("/v1/recipients/bulk")
@scope("recipients")
@operation(body=RecipientsBulkIn, responses={200: UpsertedOut})
async def bulk_recipients(request: web.Request, body: RecipientsBulkIn) -> dict[str, Any]:
    """Upsert many recipients in one transaction: all of them, or none if one is invalid.

    At most `TIDINGS_MAX_BULK_RECIPIENTS` (1,000) per call; each id once.
    """
    settings = request.app[SETTINGS]
    if len(body.recipients) > settings.max_bulk_recipients:
        raise Invalid(
            f"at most {settings.max_bulk_recipients} recipients per call", field="recipients"
        )
    seen: set[str] = set()
    for index, entry in enumerate(body.recipients):
        check_outbound(entry, settings, f"recipients.{index}.webhook_url")
        if entry.id in seen:
            raise Invalid(f"recipient {entry.id!r} is listed twice", field=f"recipients.{index}.id")
        seen.add(entry.id)
    parsed = [(entry.id, entry) for entry in body.recipients]

    def write(session: Session) -> int:
        return len(recipients.upsert_many(session, parsed))

    return {"upserted": await request.app[DB].write(write)}


def check_outbound(changes: RecipientIn, settings: Settings, field: str) -> None:
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
@operation(path=RecipientPath, responses={200: RecipientOut})
async def get_recipient(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """A recipient with derived `tier` and `activity`."""
    settings = request.app[SETTINGS]

    def read(session: Session) -> dict[str, Any]:
        return recipients.public(_recipient(session, path.id), settings)

    return await request.app[DB].read(read)


@routes.delete("/v1/recipients/{id}")
@scope("recipients")
@operation(path=RecipientPath, responses={200: ErasedOut})
async def delete_recipient(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """Erase a recipient: contact points, preferences and message copy are removed."""
    if not await request.app[DB].write(recipients.erase, path.id):
        raise NotFound(f"no recipient {path.id!r}", field="id")
    return {"id": path.id, "erased": True}


@routes.get("/v1/recipients/{id}/preferences")
@scope("read")
@operation(path=RecipientPath, responses={200: PreferencesOut})
async def get_preferences(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """A recipient's preferences with every default resolved."""
    settings = request.app[SETTINGS]

    def read(session: Session) -> dict[str, Any]:
        prefs = store.load_one(session, _recipient(session, path.id), settings=settings)
        return store.document(prefs, list(store.load_categories(session).values()))

    return await request.app[DB].read(read)


@routes.put("/v1/recipients/{id}/preferences")
@scope("recipients")
@operation(path=RecipientPath, body=PreferencesIn, responses={200: PreferencesOut})
async def put_preferences(
    request: web.Request, path: RecipientPath, body: PreferencesIn
) -> dict[str, Any]:
    """Change a recipient's preferences; keys left out keep their value."""
    settings = request.app[SETTINGS]

    def write(session: Session) -> dict[str, Any]:
        recipient = _recipient(session, path.id)
        cats = store.load_categories(session)
        store.update(session, path.id, body, categories=cats)
        session.flush()
        prefs = store.load_one(session, recipient, settings=settings)
        return store.document(prefs, list(cats.values()))

    return await request.app[DB].write(write)
