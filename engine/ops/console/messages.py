"""The message log: notifications newest first, filterable; a notification's page with its
counts, funnel and paged deliveries (with their history and errors); and cancelling it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlmodel import Session

from engine.api.contract import document
from engine.api.middleware import validation_error
from engine.ops import message_log, stats
from engine.ops.console.web import ROOT, Desk, Refused, console_page, redirect, row_id
from engine.pipeline import accept, cancel, variants, winner
from engine.schemas.answers import NotificationOut
from engine.schemas.log import NotificationsQuery
from engine.store.models import Notification
from engine.store.states import IN_FLIGHT, UNPLANNED, NotificationStatus
from preferences import store

routes = web.RouteTableDef()
PAGE = 50
STATES = tuple(NotificationStatus)
# The log's counts, in the order a delivery moves through them (`stats.figures`).
COLUMNS = ("pending", "sent", "delivered", "opened", "clicked", "suppressed", "failed")


def _query(raw: dict[str, str]) -> NotificationsQuery:
    """The log's filters, checked by the same model as `GET /v1/notifications`; the
    form's dates (`YYYY-MM-DD`) mean midnight UTC, and `created_before` includes its
    day. A bad one is a 422 naming its field."""
    given = {k: v for k, v in raw.items() if k in NotificationsQuery.model_fields and v}
    for field in ("created_after", "created_before"):
        if field in given:
            try:
                day = date.fromisoformat(given[field])
            except ValueError:
                message = "expected a date such as 2026-11-30"
                raise Refused("invalid", field=field, message=message) from None
            if field == "created_before":  # up to the end of that day
                if day >= date.max:
                    message = "expected a date before 9999-12-31"
                    raise Refused("invalid", field=field, message=message)
                day += timedelta(days=1)
            given[field] = f"{day.isoformat()}T00:00:00+00:00"
    try:
        return NotificationsQuery.model_validate(given)
    except ValidationError as exc:
        refused = validation_error(exc)
        raise Refused("invalid", field=refused.field, message=refused.message) from None


def _log_page(session: Session, query: NotificationsQuery) -> tuple[dict[str, Any], list[str]]:
    """A page of the log as `query` filters it, and every category's key to filter by."""
    page = message_log.notifications(
        session,
        category=query.category,
        state=query.status,
        created_after=query.created_after,
        created_before=query.created_before,
        before=int(query.before) if query.before else None,
        limit=query.limit or PAGE,
    )
    return page, sorted(store.load_categories(session))


@routes.get(f"{ROOT}/messages")
@console_page()
async def log(desk: Desk) -> web.Response:
    """Notifications newest first with their category, audience, status and counts,
    filtered by category, status and creation day, paged by `before`."""
    raw = dict(desk.request.query)
    query = _query(raw)

    page, categories = await desk.db.read(_log_page, query)
    for item in page["items"]:
        item["figures"] = stats.figures(item["counts"])
    filters = {k: raw.get(k, "") for k in ("category", "status", "created_after", "created_before")}
    context = {
        "section": "messages",
        "page": page,
        "categories": categories,
        "states": STATES,
        "columns": COLUMNS,
        "filters": filters,
    }
    return desk.render("messages.html", context)


def _notification(
    session: Session, nid: int, *, after: int | None
) -> tuple[accept.NotificationView, list[dict[str, Any]]]:
    """The notification as `GET /v1/notifications/{id}` shows it (its `ab_test` included),
    and its A/B test variants with their weights and delays, if it has any."""
    view = accept.status(session, nid, after=after, limit=PAGE)
    row = session.get(Notification, nid)
    found = variants.variants_of(row) if row is not None else []
    total = sum(v.weight for v in found)
    shown = [
        {"name": v.name, "weight": v.weight, "share": v.weight / total, "send_after": v.send_after}
        for v in found
    ]
    return view, shown


@routes.get(f"{ROOT}/messages/{{id}}")
@console_page()
async def notification(desk: Desk) -> web.Response:
    """One notification: status, counts per delivery status, the funnel, its A/B test
    (variants, slice, decision, winner and figures), and a page of deliveries (`?after=`
    the last delivery id shown) with their variant, history and errors."""
    nid = row_id(desk.request.match_info["id"], "id")
    raw_after = desk.request.query.get("after", "")
    after = row_id(raw_after, "after") if raw_after else None

    view, tested = await desk.db.read(_notification, nid, after=after)
    # Shown as the API answers it (`GET /v1/notifications/{id}`).
    shown = document(NotificationOut, view)
    test = shown.get("ab_test")
    counts = shown["counts"]
    # While planning or sending goes on, the page reloads itself to show it settling.
    settling = shown["status"] in UNPLANNED or any(counts.get(s) for s in IN_FLIGHT)
    context = {
        "section": "messages",
        "cancellable": shown["status"]
        not in (NotificationStatus.CANCELLED, NotificationStatus.DONE),
        "just_cancelled": desk.request.query.get("cancelled") == "1",
        "n": shown,
        "funnel": stats.funnel(counts),
        "deliveries": {"items": shown["deliveries"], "next": shown["next"]},
        "settling": settling,
        "just_sent": desk.request.query.get("sent") == "1",
        "variants": tested,
        "ab": test,
        # What the test's metric counts: `opened`, `clicked` or `converted`.
        "counted": winner.COUNTED[test["metric"]] if test else None,
    }
    return desk.render("notification.html", context)


@routes.post(f"{ROOT}/messages/{{id}}/cancel")
@console_page(form=True)
async def cancel_notification(desk: Desk) -> web.Response:
    """Cancel as `POST /v1/notifications/{id}/cancel` does: what has not gone out never
    will; the answer waits for deliveries being sent. Cancelling again changes nothing."""
    nid = row_id(desk.request.match_info["id"], "id")
    settings = desk.settings
    wait = settings.http_timeout + settings.lease_margin
    await desk.db.run(cancel.cancel, desk.db, nid, wait=wait)
    return redirect(desk.href(f"{ROOT}/messages/{nid}", cancelled=1))
