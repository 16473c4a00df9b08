"""The inbox page (`/inbox/{token}`): in-app messages, newest first, read marks and 👍 / 😕 / 👎."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlmodel import Session

from engine.catalog.categories import name_in
from engine.pipeline import receipts
from engine.schemas.common import row_id
from engine.store.models import Delivery
from engine.store.states import ARRIVED, Engagement
from engine.timeutil import iso, now
from preferences import store
from preferences.pages import forms
from preferences.pages.web import Refused, Visit, check_form, page, redirect, render

routes = web.RouteTableDef()
PAGE_SIZE = 30
RATINGS = (("up", "👍"), ("meh", "😕"), ("down", "👎"))


def _own(session: Session, visit: Visit) -> Delivery:
    """The delivery in the path, if it is this recipient's inbox message."""
    did = row_id(visit.request.match_info.get("delivery_id"))
    row = session.get(Delivery, did) if did is not None else None
    if (
        row is None
        or row.recipient_id != visit.recipient.id
        or row.channel != "inapp"
        or row.status not in ARRIVED
    ):
        raise Refused("not_found", recipient=visit.recipient)
    return row


@routes.get("/inbox/{token}")
@page("inbox")
async def inbox(visit: Visit) -> web.StreamResponse:
    """The recipient's in-app messages, newest first, with the unread count."""
    query = visit.request.query
    before = row_id(query.get("before"))

    def read(session: Session) -> dict[str, Any]:
        found = receipts.inbox(session, visit.recipient.id, before=before, limit=PAGE_SIZE)
        box: dict[str, Any] = {
            "unread": found.unread,
            "items": [_shown(item) for item in found.items],
            "next": str(found.next) if found.next is not None else None,
        }
        categories = store.load_categories(session)
        prefs = store.load_one(session, visit.recipient, settings=visit.settings)
        box["names"] = {key: name_in(c, visit.lang) for key, c in categories.items()}
        # A 👎 tightens the recipient's own cap for the category; the page says to what.
        box["own_caps"] = {
            key: visit.t.cap(caps[0].count, caps[0].per)
            for key in categories
            if (caps := prefs.category(key).caps)
        }
        box["mutable"] = {
            key
            for key, c in categories.items()
            if not c.required and prefs.category(key).enabled and not prefs.unsubscribed
        }
        return box

    box = await visit.db.read(read)
    today = now().astimezone(visit.zone)
    keep = {"before": str(before)} if before is not None else {}
    for item in box["items"]:
        did = item["delivery_id"]
        stamp = item["at"]
        item["when"] = visit.t.stamp(stamp.astimezone(visit.zone), today=today) if stamp else ""
        item["open_href"] = visit.here(open=did, **keep) + f"#m-{did}"
        item["read_action"] = visit.here(f"/{did}/read")
        item["rate_action"] = visit.here(f"/{did}/feedback")
        item["go_href"] = visit.here(f"/{did}/go")
    preferences = visit.link("preferences")
    context = {
        "box": box,
        "ratings": RATINGS,
        "opened": query.get("open"),
        "rated": query.get("rated"),
        "muted": query.get("muted") if query.get("muted") in box["names"] else None,
        "older": visit.here(before=box["next"]) if box["next"] else None,
        "newest": visit.here() if before is not None else None,
        "before": keep.get("before"),
        "csrf": visit.csrf(),
        "inbox_href": visit.here(),
        "mute_action": visit.here("/mute"),
        "read_all_action": visit.here("/read-all"),
        "marked": query.get("marked") if (query.get("marked") or "").isdigit() else None,
        "preferences": preferences,
    }
    return render(visit.request, "inbox.html", context, t=visit.t)


def _shown(item: receipts.InboxItem) -> dict[str, Any]:
    """An inbox message for the page: ids as the links carry them, the time in ISO 8601
    for `<time datetime>` and as a datetime (`at`) to show in the recipient's zone."""
    return {
        **vars(item),
        "delivery_id": str(item.delivery_id),
        "notification_id": str(item.notification_id),
        "created_at": iso(item.created_at),
        "at": item.created_at,
    }


def _back(visit: Visit, form: Any, **query: str) -> str:
    """The inbox page the form was posted from, scrolled to the message."""
    before = form.get("before")
    if isinstance(before, str) and row_id(before) is not None:
        query["before"] = before
    did = visit.request.match_info.get("delivery_id", "")
    return visit.here(**query) + (f"#m-{did}" if did else "")


@routes.post("/inbox/{token}/read-all")
@page("inbox", form=True)
async def mark_all_read(visit: Visit) -> web.StreamResponse:
    """Mark every unread message read, as opening each would."""
    form = await check_form(visit)
    count = await visit.db.write(receipts.mark_all_read, visit.recipient.id)
    return redirect(_back(visit, form, marked=str(count)))


@routes.post("/inbox/{token}/{delivery_id}/read")
@page("inbox", form=True)
async def mark_read(visit: Visit) -> web.StreamResponse:
    """Open a message: it is marked read, which cancels its pending sends on other channels."""
    form = await check_form(visit)

    def write(session: Session) -> str:
        row = _own(session, visit)
        receipts.record_event(session, int(row.id or 0), Engagement.READ)
        return str(row.id)

    did = await visit.db.write(write)
    return redirect(_back(visit, form, open=did))


@routes.post("/inbox/{token}/{delivery_id}/feedback")
@page("inbox", form=True)
async def rate(visit: Visit) -> web.StreamResponse:
    """Record 👍 / 😕 / 👎 on a message (rating it also means it was read)."""
    form = await check_form(visit)
    rating = form.get("rating")
    if rating not in ("up", "meh", "down"):
        return redirect(_back(visit, form))

    def write(session: Session) -> str:
        row = _own(session, visit)
        did = int(row.id or 0)
        receipts.record_feedback(session, did, str(rating), None, recipient_id=row.recipient_id)
        if row.read_at is None:
            receipts.record_event(session, did, Engagement.READ)
        return str(did)

    did = await visit.db.write(write)
    return redirect(_back(visit, form, rated=did, open=did))


@routes.get("/inbox/{token}/{delivery_id}/go", allow_head=False)
@page("inbox")
async def follow(visit: Visit) -> web.StreamResponse:
    """Follow a message's action link; the click is recorded on the way."""

    def write(session: Session) -> str | None:
        row = _own(session, visit)
        if row.action_url:
            receipts.record_event(session, int(row.id or 0), Engagement.CLICKED)
        return row.action_url

    target = await visit.db.write(write)
    if not target:
        raise Refused("not_found", recipient=visit.recipient)
    return redirect(target)


@routes.post("/inbox/{token}/mute")
@page("inbox", form=True)
async def mute(visit: Visit) -> web.StreamResponse:
    """Turn a category off from the inbox, as suggested after a 👎."""
    form = await check_form(visit)
    key = form.get("category")

    def write(session: Session) -> bool:
        categories = store.load_categories(session)
        category = categories.get(str(key))
        if category is None or category.required:
            return False
        store.update(
            session, visit.recipient.id, forms.turn_off(category.key), categories=categories
        )
        return True

    muted = await visit.db.write(write)
    return redirect(_back(visit, form, **({"muted": str(key)} if muted else {})))
