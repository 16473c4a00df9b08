"""Branding over HTTP: the colour arrives as a stylesheet the page policy allows, and a
logo on the platform's own site is allowed as an image and nothing more."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from engine.api.app import create_app
from engine.settings import Settings
from engine.store.db import Database
from tests.preferences.pages.test_pages_http import link, seed
from tests.support import Server

BRAND = {
    "brand_name": "Acme Cards",
    "brand_logo_url": "https://cdn.acme.example/logo.png",
    "brand_color": "#0f766e",
    "brand_support_url": "https://acme.example/help",
}


@pytest.fixture
def branded(settings: Settings, db: Database) -> Iterator[tuple[Settings, Server]]:
    seed(db)
    own = settings.model_copy(update=BRAND)
    server = Server(create_app(own)).start()
    yield own, server
    server.stop()


def test_pages_carry_the_brand_and_its_stylesheet(branded: tuple[Settings, Server]) -> None:
    settings, server = branded
    page = httpx.get(link(settings, server, "preferences"), timeout=30)
    assert page.status_code == 200
    assert "<title>" in page.text and "· Acme Cards</title>" in page.text
    assert 'src="https://cdn.acme.example/logo.png"' in page.text
    assert 'href="https://acme.example/help"' in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://cdn.acme.example;" in policy
    assert "style-src 'self';" in policy and "script-src" not in policy
    css_path = page.text.split('href="/assets/brand.css', 1)[1].split('"', 1)[0]
    css = httpx.get(f"{server.url}/assets/brand.css{css_path}", timeout=30)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "--accent: #0f766e" in css.text


def test_the_default_brand_is_tidings(settings: Settings, server: Server, db: Database) -> None:
    seed(db)
    page = httpx.get(link(settings, server, "preferences"), timeout=30)
    assert "· Tidings</title>" in page.text and "brand-logo" not in page.text
    assert "img-src 'self' data:;" in page.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("brand_color", "orange"),
        ("brand_logo_url", "javascript:alert(1)"),
        ("brand_logo_url", "http://insecure.example/logo.png"),
        ("brand_support_url", "javascript:alert(1)"),
    ],
)
def test_a_brand_setting_is_checked(field: str, value: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})
