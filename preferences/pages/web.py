"""What every token page shares: checking the link, choosing the language, the security
headers, rendering, and the page that refuses a bad link."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy import func
from sqlmodel import Session, col, select
from yarl import URL

from engine.api.context import DB, SETTINGS
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Recipient
from engine.store.states import ARRIVED
from preferences.links import PATHS, LinkError, Links
from preferences.pages import csrf, i18n
from preferences.pages.branding import Brand

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
JINJA = web.AppKey("tidings.pages.jinja", jinja2.Environment)
ASSETS: web.AppKey[dict[str, tuple[bytes, str, str]]] = web.AppKey("tidings.pages.assets", dict)

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
# Why a page was refused -> HTTP status.
REFUSALS = {
    "invalid": 403,
    "wrong_page": 403,
    "csrf": 403,
    "expired": 410,
    "revoked": 410,
    "not_found": 404,
}
CONTENT_TYPES = {".css": "text/css", ".svg": "image/svg+xml"}


class Refused(Exception):
    """A page that must not be shown: a bad link, a stale form, a message that is not there."""

    def __init__(
        self, reason: str, *, recipient: Recipient | None = None, recipient_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.recipient = recipient
        self.recipient_id = recipient_id


@dataclass
class Visit:
    """One request to a recipient's page, with a link that checked out."""

    request: web.Request
    token: str
    recipient: Recipient
    t: i18n.Translator

    @property
    def settings(self) -> Settings:
        return self.request.app[SETTINGS]

    @property
    def db(self) -> Database:
        return self.request.app[DB]

    @property
    def lang(self) -> str:
        return self.t.locale

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.recipient.timezone or self.settings.default_timezone)

    def csrf(self) -> str:
        return csrf.issue(self.settings.signing_keys[-1], self.token)

    def link(self, purpose: str) -> str:
        """A fresh link to another page of this recipient, in the same language."""
        return self.form_target(purpose)[0]

    def form_target(self, purpose: str) -> tuple[str, str]:
        """A fresh link to another page of this recipient, and a CSRF token for posting there."""
        recipient = self.recipient
        token = Links(self.settings).token(
            recipient.id, recipient.links_version, purpose, recipient.links_salt
        )
        path = PATHS[purpose].format(token=token)
        return f"{path}?lang={self.lang}", csrf.issue(self.settings.signing_keys[-1], token)

    def here(self, suffix: str = "", **query: str) -> str:
        """This page's path (plus `suffix`), keeping the language."""
        base = self.request.path.split("/")[:3]
        url = URL("/".join(base) + suffix).with_query({"lang": self.lang, **query})
        return str(url)


def _recipient(session: Session, recipient_id: str) -> Recipient | None:
    return session.get(Recipient, recipient_id)


def language(request: web.Request, recipient_locale: str | None) -> i18n.Translator:
    """`?lang=` first, then the recipient's locale, then the browser's, then the platform's."""
    return i18n.Translator(
        i18n.choose(
            request.query.get("lang"),
            recipient_locale,
            i18n.from_accept_language(request.headers.get("Accept-Language")),
            request.app[SETTINGS].default_locale,
        )
    )


async def open_visit(request: web.Request, purposes: tuple[str, ...]) -> Visit:
    """Check the link in the path against its signature, age, page and revocation."""
    token = request.match_info["token"]
    try:
        claims = Links(request.app[SETTINGS]).check(token, purposes=purposes)
    except LinkError as exc:
        raise Refused(exc.reason, recipient_id=exc.recipient_id) from None
    recipient = await request.app[DB].read(_recipient, claims.recipient_id)
    if recipient is None:  # erased since the link was minted
        raise Refused("revoked")
    if claims.revoked(recipient.links_version, recipient.links_salt):
        raise Refused("revoked", recipient=recipient)
    return Visit(request, token, recipient, language(request, recipient.locale))


async def check_form(visit: Visit) -> MultiDictProxy[Any]:
    """The posted form, if it carries this page's CSRF token and came from our pages."""
    request = visit.request
    form = await request.post()
    token = form.get(csrf.FIELD)
    fresh = csrf.valid(
        visit.settings.signing_keys[-1], visit.token, token if isinstance(token, str) else None
    )
    same = csrf.same_origin(
        origin=request.headers.get("Origin"),
        fetch_site=request.headers.get("Sec-Fetch-Site"),
        host=request.host,
        public_url=visit.settings.public_url,
    )
    if not (fresh and same):
        raise Refused("csrf", recipient=visit.recipient)
    return form


PageHandler = Callable[[Visit], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(*purposes: str, form: bool = False) -> Callable[[PageHandler], Handler]:
    """Turn `handler(visit)` into a route handler for links made for `purposes`.

    With `form=True` the request must carry a valid CSRF token. Every answer, the
    refusals included, gets the token pages' security headers.
    """

    def wrap(handler: PageHandler) -> Handler:
        @functools.wraps(handler)
        async def view(request: web.Request) -> web.StreamResponse:
            try:
                visit = await open_visit(request, purposes)
                if form:
                    await check_form(visit)
                response = await handler(visit)
            except Refused as exc:
                response = await refusal(request, exc)
            response.headers.update(page_headers(request))
            return response

        return view

    return wrap


async def refusal(request: web.Request, exc: Refused) -> web.Response:
    """A clear page saying why, in the recipient's language when we know who it is."""
    recipient = exc.recipient
    if recipient is None and exc.recipient_id is not None:
        recipient = await request.app[DB].read(_recipient, exc.recipient_id)
    t = language(request, recipient.locale if recipient else None)
    reason = "invalid" if exc.reason == "wrong_page" else exc.reason
    back = "/".join(request.path.split("/")[:3]) + f"?lang={t.locale}"
    retry = {"csrf": "error.reload", "not_found": "open_inbox"}.get(reason)
    context = {"reason": reason, "retry": (back, retry) if retry else None}
    return render(request, "refused.html", context, t=t, status=REFUSALS.get(exc.reason, 403))


def render(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    t: i18n.Translator,
    status: int = 200,
) -> web.Response:
    """A page in `t`'s language, with links to switch language on the same page."""
    keep = {k: v for k, v in request.query.items() if k == "before"}
    languages = [
        (code, name, str(request.rel_url.with_query({**keep, "lang": code})))
        for code, name in i18n.LANGUAGE_NAMES.items()
    ]
    brand = Brand.from_settings(request.app[SETTINGS])
    page_context = {
        "t": t,
        "lang": t.locale,
        "languages": languages,
        "css": request.app[ASSETS]["pages.css"][2],
        "brand": brand,
        "brand_css": request.app[ASSETS]["brand.css"][2],
        **context,
    }
    response: web.Response = aiohttp_jinja2.render_template(
        template, request, page_context, app_key=JINJA, status=status
    )
    response.headers.update(page_headers(request))
    return response


def page_headers(request: web.Request) -> dict[str, str]:
    """PAGE_HEADERS, with the platform's logo origin allowed as an image source."""
    source = Brand.from_settings(request.app[SETTINGS]).image_source
    if not source:
        return PAGE_HEADERS
    policy = PAGE_HEADERS["Content-Security-Policy"].replace(
        "img-src 'self' data:", f"img-src 'self' data: {source}"
    )
    return {**PAGE_HEADERS, "Content-Security-Policy": policy}


def redirect(location: str) -> web.Response:
    """Redirect after a post (303), so reloading never posts twice."""
    return web.Response(status=303, headers={"Location": location, **PAGE_HEADERS})


def unread_count(session: Session, recipient_id: str) -> int:
    """How many inbox messages the recipient has not read."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.recipient_id) == recipient_id,
                col(Delivery.channel) == "inapp",
                col(Delivery.status).in_(ARRIVED),
                col(Delivery.read_at).is_(None),
            )
        ).one()
    )


def badge(count: int) -> str:
    """An unread count as a badge shows it: `99+` past 99."""
    return "99+" if count > 99 else str(count)


Assets = dict[str, tuple[bytes, str, str]]


def load_assets(static: Path = STATIC, prefix: str = "/assets") -> Assets:
    """Static files in `static` by name: (content, content type, versioned URL under
    `prefix`)."""
    assets = {}
    for path in sorted(static.iterdir()):
        if path.suffix in CONTENT_TYPES:
            data = path.read_bytes()
            version = hashlib.sha256(data).hexdigest()[:10]
            assets[path.name] = (
                data,
                CONTENT_TYPES[path.suffix],
                f"{prefix}/{path.name}?v={version}",
            )
    return assets


def serve_assets(key: web.AppKey[Assets]) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for `{prefix}/{name}` serving the assets the app holds under `key`."""

    async def asset(request: web.Request) -> web.Response:
        """A stylesheet or icon; its URL changes with its content, so it caches well."""
        found = request.app[key].get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        data, content_type, _ = found
        return web.Response(
            body=data,
            content_type=content_type,
            headers={
                "Cache-Control": "public, max-age=86400",
                "X-Content-Type-Options": "nosniff",
            },
        )

    return asset


asset = serve_assets(ASSETS)


def environment(
    app: web.Application,
    *,
    key: web.AppKey[jinja2.Environment] = JINJA,
    templates: Path = TEMPLATES,
) -> jinja2.Environment:
    """A Jinja environment for the templates in `templates`: autoescaped, strict about
    undefined names (the recipient pages' by default)."""
    env: jinja2.Environment = aiohttp_jinja2.setup(
        app,
        app_key=key,
        loader=jinja2.FileSystemLoader(templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        default_helpers=False,
    )
    env.filters["badge"] = badge
    return env
