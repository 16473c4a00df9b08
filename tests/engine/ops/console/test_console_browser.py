"""The console in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import time_machine

from engine.ops.console import session
from engine.settings import Settings
from engine.store import installation
from engine.store.db import Database
from engine.store.models import ApiKey
from engine.timeutil import now
from tests.browser import CHROMIUM, NEEDS_CHROMIUM
from tests.engine.acceptance.test_pipeline import ORDER
from tests.engine.conftest import recipient, send
from tests.engine.ops.console.test_console_pages import seed_ab_test, seed_outcomes
from tests.support import Server

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
WIDE = "account.security.password_reset_from_a_new_device"

pytestmark = NEEDS_CHROMIUM

if CHROMIUM.exists():
    from playwright.sync_api import Browser, Page, expect


@pytest.fixture(params=["phone", "desktop"])
def page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A browser tab at phone or desktop width that fails the test on any CSP refusal."""
    size = PHONE if request.param == "phone" else DESKTOP
    context = browser.new_context(viewport=size, locale="en-US")  # type: ignore[arg-type]
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    refusals: list[str] = []
    tab.on(
        "console",
        lambda m: refusals.append(m.text) if "Content Security Policy" in m.text else None,
    )
    # Whatever a page asks for loads: its stylesheet, images, the browser's icon (which
    # Chromium reports only on the console). A page itself may answer 404.
    failed: list[str] = []
    pages: set[str] = set()
    tab.on(
        "response", lambda r: pages.add(r.url) if r.request.resource_type == "document" else None
    )
    tab.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
    tab.on(
        "console",
        lambda m: (
            failed.append(f"{m.location['url']}: {m.text}")
            if m.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield tab
    context.close()
    assert refusals == [], refusals
    assert [f for f in failed if f.split(": ")[0] not in pages] == [], failed


def sign_in(page: Page, server: Server, key: str) -> None:
    page.goto(f"{server.url}/console")
    expect(page).to_have_url(f"{server.url}/console/sign-in?reason=missing&lang=en")
    page.get_by_label("Admin API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Data", exact=True)).to_be_visible()


def fits(page: Page) -> None:
    """Nothing is wider than the screen; wide tables scroll inside their own box."""
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.viewport_size
    assert viewport is not None
    assert width <= viewport["width"], f"{page.url} is {width}px wide on {viewport['width']}px"


def test_sign_in_every_page_and_sign_out(
    page: Page, server: Server, admin_key: str, db: Database, tmp_path: Path
) -> None:
    seed_outcomes(db)
    sign_in(page, server, admin_key)
    # The key is nowhere in the browser: not in a cookie, not in storage.
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == [session.COOKIE]
    assert all(admin_key not in c["value"] for c in cookies)
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    charts = page.locator("img.chart")
    expect(charts).to_have_count(4)
    for index in range(4):  # each chart decoded and drawn under the page's CSP
        assert charts.nth(index).evaluate("img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#figures")).to_contain_text("promo.flash_sale")
    fits(page)
    page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)

    page.get_by_label("Group by").select_option("channel")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#figures")).to_contain_text("email")

    for name, heading in (
        ("Messages", "Messages"),
        ("Health", "Health"),
        ("Test send", "Test send"),
    ):
        page.get_by_role("link", name=name, exact=True).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        fits(page)
    page.get_by_role("link", name="Recipients", exact=True).click()
    page.get_by_label("Recipient id").fill("r-1")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()

    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    page.get_by_role("link", name="English").click()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto(f"{server.url}/console/health")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_tampered_form_token_is_refused_and_changes_nothing(
    page: Page, server: Server, admin_key: str
) -> None:
    sign_in(page, server, admin_key)
    page.eval_on_selector("input[name=csrf_token]", "el => { el.value = 'forged'; }")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    page.goto(f"{server.url}/console/health")
    expect(page.get_by_role("heading", name="Health", exact=True)).to_be_visible()


def test_an_expired_sign_in_sends_you_back_to_sign_in(
    page: Page, server: Server, admin_key: str, settings: Settings, db: Database
) -> None:
    with db.session() as s:
        row = s.get(ApiKey, 1)
        assert row is not None
        ago = now() - timedelta(seconds=settings.console_session_ttl + 1)
        with time_machine.travel(ago):
            stale = session.issue(installation.bind(settings, db).signing_keys, row)
    page.context.add_cookies(
        [{"name": session.COOKIE, "value": stale, "domain": "127.0.0.1", "path": "/console"}]
    )
    page.goto(f"{server.url}/console")
    expect(page.get_by_role("status")).to_have_text(
        "Your sign-in has expired. Please sign in again."
    )
    assert session.COOKIE not in [c["name"] for c in page.context.cookies()]


def test_cancel_a_notification_from_the_log(
    page: Page, server: Server, admin_key: str, admin: httpx.Client
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com")
    nid = send(admin, category="order.delivered", to=["u-1"], data={"card": "c", "order_id": "1"})
    sign_in(page, server, admin_key)
    page.get_by_role("link", name="Messages", exact=True).click()
    page.get_by_label("Status").select_option("accepted")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name=nid, exact=True).click()
    expect(
        page.get_by_role("heading", name=f"Notification {nid} · order.delivered")
    ).to_be_visible()
    fits(page)
    page.get_by_role("button", name="Cancel this notification").click()
    expect(page.get_by_role("status")).to_contain_text("Cancelled.")
    expect(page.locator("#notification-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel this notification")).to_have_count(0)
    assert admin.get(f"/v1/notifications/{nid}").json()["status"] == "cancelled"


def test_look_up_a_recipient_and_mint_their_links(
    page: Page, server: Server, admin_key: str, admin: httpx.Client
) -> None:
    recipient(admin, "u-5", email="u5@example.com", tags=["beta"])
    admin.put("/v1/recipients/u-5/preferences", json={"channels": {"sms": False}})
    sign_in(page, server, admin_key)
    page.get_by_role("link", name="Recipients", exact=True).click()
    page.get_by_label("Recipient id").fill("u-5")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="Recipients: u-5")).to_be_visible()
    expect(page.locator("#preferences tr", has_text="sms")).to_contain_text("chosen")
    expect(page.locator("#preferences tr", has_text="email")).to_contain_text("default")
    fits(page)
    page.get_by_role("button", name="Mint page links").click()
    links = page.locator("#links a")
    expect(links).to_have_count(3)
    href = links.first.get_attribute("href")
    assert href is not None and "/p/" in href
    page.goto(server.url + href[href.index("/p/") :])
    expect(page.get_by_role("heading", name="Notification preferences")).to_be_visible()


def test_no_console_page_is_wider_than_the_screen(
    page: Page, server: Server, admin_key: str, admin: httpx.Client, db: Database, tmp_path: Path
) -> None:
    seed_outcomes(db)
    # A category key wider than a phone: the preferences table scrolls in its own box.
    admin.put(f"/v1/categories/{WIDE}", json=ORDER).raise_for_status()
    long = "x" * 300
    recipient(
        admin,
        "u-wide",
        name="Ada Lovelace-Byron of a very long family name indeed",
        email=f"{long[:60]}@example.com",
        attributes={
            "level": "gold",
            "joined": "2024-03-01",
            "vip": True,
            "note": long,
            "a_rather_long_attribute_name_that_a_crm_export_might_bring": "yes",
            "prefs": {"theme": "dark", "sizes": [38, 39, 40], "motto": "y" * 200},
        },
    )
    nid = seed_ab_test(db, "u-wide")
    sign_in(page, server, admin_key)
    width = page.viewport_size["width"] if page.viewport_size else 0
    too_wide = {}
    for path in (
        "/console",
        "/console/messages",
        f"/console/messages/{nid}",
        "/console/recipients",
        "/console/recipients/u-wide",
        "/console/health",
        "/console/endpoints",
        "/console/send",
        "/console/nope",
    ):
        for lang in ("en", "zh-CN"):
            page.goto(f"{server.url}{path}?lang={lang}")
            expect(page.locator("main h1").first).to_be_visible()
            scrolls = page.evaluate("document.documentElement.scrollWidth")
            if scrolls > width:
                too_wide[f"{path}?lang={lang}"] = scrolls
    assert too_wide == {}, f"wider than {width}px: {too_wide}"
    page.goto(f"{server.url}/console/recipients/u-wide")
    expect(page.locator("#attributes")).to_contain_text(long)
    page.screenshot(path=str(tmp_path / "recipient.png"), full_page=True)
    page.goto(f"{server.url}/console/messages/{nid}")
    expect(page.locator("#ab-winner")).to_contain_text("A")
    page.screenshot(path=str(tmp_path / "notification.png"), full_page=True)
    page.goto(f"{server.url}/console/nope")
    page.screenshot(path=str(tmp_path / "nope.png"), full_page=True)
