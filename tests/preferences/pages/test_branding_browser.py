"""The platform's own face on every page, and "mark all as read", in a real browser
(Debian's headless Chromium through Playwright)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.ops.demo import BRAND
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery
from tests.browser import CHROMIUM, NEEDS_CHROMIUM
from tests.preferences.pages.test_pages_browser import (
    fits_the_screen_and_labels_every_control,
)
from tests.preferences.pages.test_pages_http import link, message, tamper
from tests.support import Server

pytestmark = NEEDS_CHROMIUM

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

ORANGE = "rgb(234, 88, 12)"  # the demo's #ea580c


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The demo platform's brand: the mascot 卡卡 as logo, orange, a support address."""
    return settings.model_copy(update=BRAND)


def shows_the_brand(page: Page) -> None:
    """Name, logo (loaded), accent colour and support link; no word of the engine's name."""
    expect(page.locator(".brand-name")).to_have_text("卡卡发卡")
    assert page.title().endswith("· 卡卡发卡")
    logo = page.locator("img.brand-logo")
    expect(logo).to_have_attribute("src", "/assets/kaka.svg")
    assert page.evaluate("document.querySelector('img.brand-logo').naturalWidth") > 0
    support = page.locator("a.support")
    expect(support).to_have_attribute("href", "mailto:help@kaka-cards.example")
    expect(support).to_contain_text("卡卡发卡")
    accent = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--accent')"
    )
    assert accent.strip() == "#ea580c"
    assert "Tidings" not in page.locator("body").inner_text()


def test_every_page_wears_the_platform_brand(
    phone: Page, settings: Settings, server: Server, db: Database, tmp_path: Path
) -> None:
    message(db, title="Flash sale tonight")
    for purpose in ("preferences", "inbox", "unsubscribe"):
        phone.goto(link(settings, server, purpose))
        shows_the_brand(phone)
        fits_the_screen_and_labels_every_control(phone)
        phone.screenshot(path=str(tmp_path / f"{purpose}.png"), full_page=True)
    phone.goto(link(settings, server, "inbox"))
    button = phone.get_by_role("button", name="Mark all as read")
    assert button.evaluate("b => getComputedStyle(b).color") == ORANGE
    response = phone.goto(tamper(link(settings, server, "inbox")))  # a refusal too
    assert response is not None and response.status == 403
    shows_the_brand(phone)


def test_mark_all_as_read(
    phone: Page, settings: Settings, server: Server, db: Database, admin: httpx.Client
) -> None:
    ids = [message(db, title=f"Sale {n}", notification_id=n) for n in (1, 2, 3)]
    phone.goto(link(settings, server, "inbox"))
    expect(phone.locator("#unread-count")).to_have_text("3 unread")
    phone.get_by_role("button", name="Mark all as read").click()
    expect(phone.locator("#unread-count")).to_have_text("You're all caught up.")
    expect(phone.get_by_role("status")).to_contain_text("Marked 3 as read.")
    expect(phone.get_by_role("button", name="Mark all as read")).to_have_count(0)
    expect(phone.locator(".msg.unread")).to_have_count(0)
    assert admin.get("/v1/recipients/u-1/inbox").json()["unread"] == 0
    with db.session() as session:
        assert all(session.get(Delivery, i).read_at is not None for i in ids)  # type: ignore[union-attr]
