"""The recipient's web pages: preference center, inbox and one-click unsubscribe.

They need no API key: each URL carries a signed, expiring, revocable link token
(`preferences.links`). They render on the server (aiohttp-jinja2), work without
JavaScript, protect their forms against CSRF, and speak `en` and `zh-CN`.
"""

from __future__ import annotations

from aiohttp import web

from engine.api.context import SETTINGS
from preferences.pages import branding, center, inbox
from preferences.pages.web import ASSETS, asset, environment, load_assets


def setup(app: web.Application) -> None:
    """Add the pages, their templates and their stylesheet to `app`."""
    environment(app)
    app[ASSETS] = load_assets()
    app[ASSETS]["brand.css"] = branding.asset(branding.Brand.from_settings(app[SETTINGS]))
    app.router.add_get("/assets/{name}", asset)
    app.add_routes(center.routes)
    app.add_routes(inbox.routes)
