"""The ops console at `/console`: a data panel, the message log, recipient lookup, health,
the event endpoints and a test send, for people holding an `admin` API key.

Server-rendered (aiohttp-jinja2) in `en` and `zh-CN`, without any script: charts are
SVG images drawn by pygal; sign-in is a signed, expiring cookie (`session`), and every
form carries a CSRF token.
"""

from __future__ import annotations

from aiohttp import web

from engine.ops.console import (
    endpoints,
    health,
    messages,
    missing,
    panel,
    recipients,
    send,
    signin,
)
from engine.ops.console.web import ROOT, setup_pages

__all__ = ["ROOT", "setup"]


def setup(app: web.Application) -> None:
    """Add the console's routes, templates and stylesheet to `app`."""
    setup_pages(app)
    for module in (signin, panel, messages, recipients, health, endpoints, send):
        app.add_routes(module.routes)
    app.add_routes(missing.routes)  # last: only what no other console route answers
