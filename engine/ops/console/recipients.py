"""Recipient lookup: who they are, what they chose and what defaults apply, what they
were sent, their inbox and feedback, and fresh links to their pages."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session

from engine.api.contract import document
from engine.catalog import recipients
from engine.ops.console.web import ROOT, Desk, Refused, console_page, redirect
from engine.pipeline import receipts
from engine.schemas.answers import DeliveryPage, InboxOut
from engine.schemas.common import Key
from engine.settings import Settings
from engine.store.models import Preference, Recipient
from preferences import store
from preferences.links import Links

routes = web.RouteTableDef()
RECENT = 20
RECIPIENT_ID: TypeAdapter[str] = TypeAdapter(Key)


@routes.get(f"{ROOT}/recipients")
@console_page()
async def lookup(desk: Desk) -> web.Response:
    """The lookup form; `?id=` opens that recipient's page."""
    rid = desk.request.query.get("id", "").strip()
    if rid:
        return redirect(desk.href(f"{ROOT}/recipients/{_checked(rid)}"))
    return desk.render("recipients.html", {"section": "recipients"})


def _read(session: Session, rid: str, *, settings: Settings) -> dict[str, Any]:
    row = session.get(Recipient, rid)
    if row is None:
        raise Refused("not_found", field="id", message=f"no recipient {rid!r}")
    prefs = store.load_one(session, row, settings=settings)
    categories = list(store.load_categories(session).values())
    stored = session.get(Preference, rid)
    return {
        "recipient": recipients.public(row, settings),
        "preferences": store.document(prefs, categories),
        # What the recipient set themselves; everything else is a platform default.
        "chosen": {
            "channels": set((stored.channels or {}) if stored else {}),
            "categories": set((stored.categories or {}) if stored else {}),
            "caps": bool(stored and stored.caps),
            "quiet_hours": bool(stored and stored.quiet_hours),
            "digest": bool(stored and stored.digest),
        },
        "deliveries": document(
            DeliveryPage, receipts.recipient_deliveries(session, rid, before=None, limit=RECENT)
        ),
        "inbox": document(InboxOut, receipts.inbox(session, rid, before=None, limit=RECENT)),
        "feedback": receipts.recipient_feedback(session, rid, limit=RECENT),
        "links_version": row.links_version,
        "links_salt": row.links_salt,
    }


def _checked(rid: str) -> str:
    """A recipient id as the API takes them; a 422 naming `id` otherwise."""
    try:
        return RECIPIENT_ID.validate_python(rid)
    except ValidationError:
        message = "expected 1 to 100 letters, digits, '_', '.', ':' or '-'"
        raise Refused("invalid", field="id", message=message) from None


async def _page(desk: Desk, *, minted: bool) -> web.Response:
    rid = _checked(desk.request.match_info["id"])

    found = await desk.db.read(_read, rid, settings=desk.settings)
    links = Links(desk.settings)
    context = {
        "section": "recipients",
        **found,
        "links": links.mint(rid, found["links_version"], found["links_salt"]) if minted else None,
        "links_expire": links.expires_at() if minted else None,
    }
    return desk.render("recipient.html", context)


@routes.get(f"{ROOT}/recipients/{{id}}")
@console_page()
async def recipient(desk: Desk) -> web.Response:
    """One recipient: attributes, effective preferences, deliveries, inbox, feedback."""
    return await _page(desk, minted=False)


@routes.post(f"{ROOT}/recipients/{{id}}/links")
@console_page(form=True)
async def mint_links(desk: Desk) -> web.Response:
    """The recipient's page again, with fresh signed links to their pages."""
    return await _page(desk, minted=True)
