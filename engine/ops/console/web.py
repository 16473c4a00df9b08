"""What every console page shares: the signed-in check, CSRF on forms, the language,
the security headers, rendering, and the pages that refuse a request."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from redis.exceptions import RedisError
from yarl import URL

from engine.api.context import DB, REDIS, SETTINGS
from engine.api.errors import status_of
from engine.errors import NotFound, TidingsError
from engine.ops.console import i18n, session
from engine.settings import Settings
from engine.store.db import Database
from engine.store.redis_keys import RedisKeys
from preferences.pages import csrf
from preferences.pages import web as pages
from preferences.pages.web import PAGE_HEADERS

log = logging.getLogger("tidings.console")
HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
JINJA = web.AppKey("tidings.console.jinja", jinja2.Environment)
ASSETS: web.AppKey[pages.Assets] = web.AppKey("tidings.console.assets", dict)
ROOT = "/console"
# Sign-in form tokens outlive the form by little: an hour.
SIGN_IN_MAX_AGE = 3600

# The recipient pages' headers: no script at all, styles and images from here (charts
# are SVG images in data: URLs), forms post only here.
HEADERS = dict(PAGE_HEADERS)


@dataclass
class Desk:
    """One request to a console page by a signed-in operator."""

    request: web.Request
    operator: session.Operator
    t: i18n.Translator

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS]

    @property
    def db(self) -> Database:
        return self.request.app[DB]

    def csrf(self) -> str:
        """The CSRF token for this session's forms."""
        return csrf.issue(self.settings.signing_keys[-1], self.operator.session_id)

    def href(self, path: str, **query: Any) -> str:
        """A console URL in the reader's language (`None` values are left out)."""
        return href(path, self.t.locale, **query)

    def render(self, template: str, context: Mapping[str, Any], status: int = 200) -> web.Response:
        return render(self.request, template, context, t=self.t, desk=self, status=status)


def href(path: str, lang: str, **query: Any) -> str:
    """`path` with `query` and `lang`, leaving out empty values."""
    kept = {k: str(v) for k, v in query.items() if v not in (None, "")}
    return str(URL(path).with_query({**kept, "lang": lang}))


def language(request: web.Request) -> i18n.Translator:
    """`?lang=` first, then the browser's, then the platform's."""
    return i18n.Translator(
        i18n.choose(
            request.query.get("lang"),
            i18n.from_accept_language(request.headers.get("Accept-Language")),
            request.app[SETTINGS].default_locale,
        )
    )


class Refused(Exception):
    """A console request that gets a page saying why instead: `csrf` (403), `invalid`
    (422, naming `field`) or `not_found` (404)."""

    STATUS = {"csrf": 403, "invalid": 422, "not_found": 404}

    def __init__(self, reason: str, *, field: str | None = None, message: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.message = message


def row_id(raw: str, field: str) -> int:
    """A row id from the path or query; 422 naming `field` when it is not one."""
    if not raw.isdigit() or len(raw) > 18:
        raise Refused("invalid", field=field, message="expected a whole number such as 42")
    return int(raw)


def same_origin(request: web.Request) -> bool:
    return csrf.same_origin(
        origin=request.headers.get("Origin"),
        fetch_site=request.headers.get("Sec-Fetch-Site"),
        host=request.host,
        public_url=request.app[SETTINGS].public_url,
    )


async def checked_form(request: web.Request, bound_to: str, *, max_age: int) -> MultiDictProxy[Any]:
    """The posted form, if its CSRF token was issued for `bound_to` and it came from here."""
    form = await request.post()
    token = form.get(csrf.FIELD)
    secret = request.app[SETTINGS].signing_keys[-1]
    fresh = csrf.valid(secret, bound_to, token if isinstance(token, str) else None, max_age=max_age)
    if not (fresh and same_origin(request)):
        raise Refused("csrf")
    return form


DeskHandler = Callable[[Desk], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_page(*, form: bool = False) -> Callable[[DeskHandler], Handler]:
    """Turn `handler(desk)` into a route handler that needs a signed-in operator.

    Without a live session a page redirects to sign-in (saying why: expired, revoked);
    with `form=True` the post must carry this session's CSRF token. Domain errors
    become pages with their status (422 naming the field, 404).
    """

    def wrap(handler: DeskHandler) -> Handler:
        @functools.wraps(handler)
        async def view(request: web.Request) -> web.StreamResponse:
            t = language(request)
            settings = request.app[SETTINGS]
            try:
                operator = await signed_in(request)
            except session.SignedOut as exc:
                return signed_out(request, t, exc.reason)
            desk = Desk(request, operator, t)
            try:
                if form:
                    max_age = min(settings.console_session_ttl, csrf.MAX_AGE)
                    await checked_form(request, operator.session_id, max_age=max_age)
                response = await handler(desk)
            except Refused as exc:
                response = refusal(request, t, exc, desk=desk)
            except TidingsError as exc:
                reason = "not_found" if isinstance(exc, NotFound) else "invalid"
                refused = Refused(reason, field=exc.field, message=exc.message)
                response = refusal(request, t, refused, status=status_of(exc), desk=desk)
            response.headers.update(HEADERS)
            return response

        return view

    return wrap


async def signed_in(request: web.Request) -> session.Operator:
    """The operator whose live session the request carries; `SignedOut` saying why not."""
    settings = request.app[SETTINGS]
    payload = session.check(
        settings.signing_keys,
        request.cookies.get(session.COOKIE),
        max_age=settings.console_session_ttl,
    )
    operator = await request.app[DB].read(session.operator, payload)
    if await _signed_out(request, operator.session_id):
        raise session.SignedOut("signed_out")
    return operator


async def _signed_out(request: web.Request, session_id: str) -> bool:
    """Whether this session signed out before its cookie expired (Redis remembers that
    for as long as the cookie could last; when Redis does not answer, the cookie's own
    signature and age decide)."""
    key = RedisKeys.from_settings(request.app[SETTINGS]).console_signed_out(session_id)
    try:
        return bool(await request.app[REDIS].exists(key))
    except RedisError as exc:
        log.warning("could not check for a console sign-out: %s", exc)
        return False


async def forget(request: web.Request, operator: session.Operator) -> None:
    """Refuse this session's cookie from now on, even where a copy of it survives."""
    settings = request.app[SETTINGS]
    key = RedisKeys.from_settings(settings).console_signed_out(operator.session_id)
    try:
        await request.app[REDIS].set(key, "1", ex=settings.console_session_ttl)
    except RedisError as exc:
        log.warning("could not record a console sign-out: %s", exc)


def signed_out(request: web.Request, t: i18n.Translator, reason: str) -> web.Response:
    """To the sign-in page, saying why; the stale cookie is dropped."""
    target = href(f"{ROOT}/sign-in", t.locale, reason=reason)
    response = redirect(target)
    if reason != "missing":
        response.del_cookie(session.COOKIE, path=ROOT)
    return response


def refusal(
    request: web.Request,
    t: i18n.Translator,
    exc: Refused,
    *,
    status: int | None = None,
    desk: Desk | None = None,
) -> web.Response:
    """A page saying why the request was refused, with the console's navigation when
    someone is signed in."""
    context = {"reason": exc.reason, "field": exc.field, "message": exc.message}
    code = status or Refused.STATUS[exc.reason]
    return render(request, "refused.html", context, t=t, desk=desk, status=code)


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    t: i18n.Translator,
    desk: Desk | None = None,
    status: int = 200,
) -> web.Response:
    """A console page in `t`'s language, with links to the same page in the others."""
    query = {k: v for k, v in request.query.items() if k != "lang"}
    languages = [
        (code, name, href(request.path, code, **query))
        for code, name in i18n.LANGUAGE_NAMES.items()
    ]
    page_context = {
        "t": t,
        "lang": t.locale,
        "languages": languages,
        "css": request.app[ASSETS]["console.css"][2],
        "desk": desk,
        "csrf_field": csrf.FIELD,
        "csrf_token": desk.csrf() if desk else None,
        "href": functools.partial(href, lang=t.locale),
        "section": context.get("section", ""),
        **context,
    }
    response: web.Response = aiohttp_jinja2.render_template(
        template, request, page_context, app_key=JINJA, status=status
    )
    response.headers.update(HEADERS)
    return response


def redirect(location: str) -> web.Response:
    """Redirect after a post (303), so reloading never posts twice."""
    return web.Response(status=303, headers={"Location": location, **HEADERS})


def setup_pages(app: web.Application) -> None:
    """The console's templates and stylesheet, on the recipient pages' machinery."""
    pages.environment(app, key=JINJA, templates=TEMPLATES)
    app[ASSETS] = pages.load_assets(STATIC, f"{ROOT}/assets")
    app.router.add_get(f"{ROOT}/assets/{{name}}", pages.serve_assets(ASSETS))
