"""Signed page links for a recipient: mint them, and revoke every one minted before."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import create_model
from sqlalchemy import update
from sqlmodel import Session, col

from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import operation
from engine.errors import NotFound
from engine.schemas.answers import RevokedOut
from engine.schemas.common import Out, Timestamp
from engine.schemas.params import RecipientPath
from engine.store.models import Recipient
from engine.timeutil import iso, now
from preferences.links import PURPOSES, Links

routes = web.RouteTableDef()
LinksOut = create_model(
    "LinksOut",
    __base__=Out,
    __doc__="A signed link per page, and when they expire.",
    expires_at=(Timestamp, ...),
    **{purpose: (str, ...) for purpose in PURPOSES},  # type: ignore[call-overload]
)


@routes.post("/v1/recipients/{id}/links")
@scope("links")
@operation(path=RecipientPath, responses={200: LinksOut})
async def mint_links(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """Mint signed links to a recipient's preference center, inbox and one-click unsubscribe.

    Needs the `links` scope (or `admin`), not `send`: a preference or inbox link reads the
    recipient's messages and writes their preferences. They expire after
    `TIDINGS_LINK_TTL` seconds.
    """
    rid = path.id
    links = Links(request.app[SETTINGS])

    def read(session: Session) -> tuple[int, str | None] | None:
        row = session.get(Recipient, rid)
        return (row.links_version, row.links_salt) if row else None

    found = await request.app[DB].read(read)
    if found is None:
        raise NotFound(f"no recipient {rid!r}", field="id")
    version, salt = found
    body: dict[str, Any] = dict(links.mint(rid, version, salt))
    body["expires_at"] = iso(links.expires_at())
    return body


@routes.post("/v1/recipients/{id}/links/revoke")
@scope("admin")
@operation(path=RecipientPath, responses={200: RevokedOut})
async def revoke_links(request: web.Request, path: RecipientPath) -> dict[str, Any]:
    """Revoke every page link minted for a recipient so far (a leaked link, a new owner)."""
    rid = path.id

    def write(session: Session) -> int | None:
        bumped = session.execute(
            update(Recipient)
            .where(col(Recipient.id) == rid)
            .values(links_version=col(Recipient.links_version) + 1, updated_at=now())
            .returning(col(Recipient.links_version))
        ).first()
        return int(bumped[0]) if bumped else None

    version = await request.app[DB].write(write)
    if version is None:
        raise NotFound(f"no recipient {rid!r}", field="id")
    return {"id": rid, "revoked": True, "links_version": version}
