"""Signing in to the console with an `admin` API key, and signing out."""

from __future__ import annotations

import secrets

from aiohttp import web

from engine.api.context import DB, SETTINGS
from engine.ops.console import session
from engine.ops.console.web import (
    ROOT,
    SIGN_IN_MAX_AGE,
    Desk,
    Refused,
    checked_form,
    console_page,
    forget,
    href,
    language,
    redirect,
    refusal,
    render,
)
from preferences.pages import csrf

routes = web.RouteTableDef()
REASONS = ("missing", "invalid", "expired", "revoked", "signed_out")


def _secure(request: web.Request) -> bool:
    return request.app[SETTINGS].public_url.startswith("https://")


@routes.get(f"{ROOT}/sign-in")
async def sign_in_page(request: web.Request) -> web.Response:
    """The sign-in form; its CSRF token is bound to a short-lived cookie of its own."""
    return _form(request, reason=request.query.get("reason"), status=200)


def _form(request: web.Request, *, reason: str | None, status: int) -> web.Response:
    t = language(request)
    nonce = secrets.token_urlsafe(16)
    token = csrf.issue(request.app[SETTINGS].signing_keys[-1], nonce)
    context = {
        "reason": reason if reason in REASONS or reason == "refused" else None,
        "token": token,
        "action": href(f"{ROOT}/sign-in", t.locale),
    }
    response = render(request, "sign_in.html", context, t=t, status=status)
    response.set_cookie(
        session.SIGN_IN_COOKIE,
        nonce,
        max_age=SIGN_IN_MAX_AGE,
        path=f"{ROOT}/sign-in",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )
    return response


@routes.post(f"{ROOT}/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    """Check the posted key: a live `admin` key gets a session cookie (never the key)."""
    t = language(request)
    nonce = request.cookies.get(session.SIGN_IN_COOKIE, "")
    try:
        form = await checked_form(request, nonce, max_age=SIGN_IN_MAX_AGE)
    except Refused as exc:
        return refusal(request, t, exc)
    plain = form.get("key")
    if not isinstance(plain, str) or not plain.strip():
        return _form(request, reason="refused", status=401)

    key = await request.app[DB].read(session.sign_in, plain)
    if key is None:
        return _form(request, reason="refused", status=401)
    settings = request.app[SETTINGS]
    response = redirect(href(ROOT, t.locale))
    response.set_cookie(
        session.COOKIE,
        session.issue(settings.signing_keys, key),
        max_age=settings.console_session_ttl,
        path=ROOT,
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )
    response.del_cookie(session.SIGN_IN_COOKIE, path=f"{ROOT}/sign-in")
    return response


@routes.post(f"{ROOT}/sign-out")
@console_page(form=True)
async def sign_out(desk: Desk) -> web.Response:
    """Drop the session cookie and go back to the sign-in page."""
    await forget(desk.request, desk.operator)
    response = redirect(desk.href(f"{ROOT}/sign-in", reason="signed_out"))
    response.del_cookie(session.COOKIE, path=ROOT)
    return response
