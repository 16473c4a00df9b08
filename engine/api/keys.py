"""Admin API for API keys: list them (never their secret) and revoke one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.api.context import DB, KEY_CACHE, REDIS, scope
from engine.api.contract import operation
from engine.catalog import keys
from engine.errors import NotFound
from engine.schemas.answers import KeyList, KeyOut
from engine.schemas.params import RowPath

routes = web.RouteTableDef()


@routes.get("/v1/keys")
@scope("admin")
@operation(responses={200: KeyList})
async def list_keys(request: web.Request) -> dict[str, Any]:
    """Every API key with its name, scopes, when it was created, last used and revoked."""

    def read(session: Session) -> list[dict[str, Any]]:
        return [keys.public(row) for row in keys.listing(session)]

    return {"items": await request.app[DB].read(read)}


@routes.post("/v1/keys/{id}/revoke")
@scope("admin")
@operation(path=RowPath, responses={200: KeyOut})
async def revoke_key(request: web.Request, path: RowPath) -> dict[str, Any]:
    """Revoke a key: every API process refuses it from the very next request."""
    key_id = int(path.id)

    def write(session: Session) -> dict[str, Any] | None:
        row = keys.revoke(session, key_id)
        return keys.public(row) if row else None

    revoked = await request.app[DB].write(write)
    if revoked is None:
        raise NotFound(f"no API key {path.id!r}", field="id")
    # Other API processes drop their caches when the counter moves; if Redis is down,
    # they do not cache at all, so the revocation holds either way.
    await request.app[KEY_CACHE].announce(request.app[REDIS])
    return revoked
