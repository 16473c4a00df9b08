"""Test send: one category's message to one recipient, accepted exactly as
`POST /v1/notifications` accepts it, then watched on the notification's page."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError
from sqlmodel import Session

from engine.api.context import DISPATCH
from engine.api.errors import HttpError, status_of
from engine.api.middleware import validation_error
from engine.api.notifications import after_answer
from engine.errors import TidingsError
from engine.ops.console.web import ROOT, Desk, console_page, redirect
from engine.pipeline import accept
from engine.schemas.notifications import NotificationIn
from engine.store.models import Category
from preferences import store

routes = web.RouteTableDef()


def _sorted_categories(session: Session) -> list[Category]:
    return sorted(store.load_categories(session).values(), key=lambda c: c.key)


async def _categories(desk: Desk) -> list[Category]:
    return await desk.db.read(_sorted_categories)


def _form(
    desk: Desk,
    categories: list[Category],
    values: dict[str, str],
    error: TidingsError | HttpError | None = None,
) -> web.Response:
    context = {
        "section": "send",
        "categories": categories,
        "values": values,
        "error": error,
    }
    status = 200
    if error is not None:
        status = error.status if isinstance(error, HttpError) else status_of(error)
    return desk.render("send.html", context, status=status)


@routes.get(f"{ROOT}/send")
@console_page()
async def send_form(desk: Desk) -> web.Response:
    """The form: a category, a recipient id, and the template's data as JSON."""
    values = {"category": "", "recipient": desk.request.query.get("recipient", ""), "data": "{}"}
    return _form(desk, await _categories(desk), values)


@routes.post(f"{ROOT}/send")
@console_page(form=True)
async def send(desk: Desk) -> web.Response:
    """Accept the test notification and open its page; a bad field re-shows the form
    with a 422 naming it as the API would (`category`, `to.0`, `data`)."""
    form = await desk.request.post()  # its CSRF token was checked already
    values = {k: str(form.get(k, "")).strip() for k in ("category", "recipient", "data")}
    categories = await _categories(desk)
    try:
        spec = _spec(values)
        (accepted,) = await desk.db.run(
            accept.submit,
            desk.db,
            [spec],
            settings=desk.settings,
            planner=desk.request.app[DISPATCH],
            later=after_answer(desk.request),
        )
    except (TidingsError, HttpError) as exc:
        return _form(desk, categories, values, exc)
    return redirect(desk.href(f"{ROOT}/messages/{accepted.id}", sent=1))


def _spec(values: dict[str, str]) -> NotificationIn:
    """The notification the form describes; a 400 `HttpError` for data that is not JSON,
    an `Invalid` naming the field that is wrong."""
    try:
        data: Any = json.loads(values["data"] or "{}")
    except json.JSONDecodeError as exc:
        raise HttpError(
            f"the data is not valid JSON: {exc.msg}", status=400, code="invalid_json", field="data"
        ) from None
    body = {"category": values["category"], "to": [values["recipient"]], "data": data}
    try:
        return NotificationIn.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
