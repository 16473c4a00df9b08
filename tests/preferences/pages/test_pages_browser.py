"""The recipient pages in a real browser: Debian's headless Chromium driven by Playwright."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlmodel import col, select

from engine.pipeline.policy import Request, decide, rules_of
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Category, Delivery, Feedback, Recipient
from preferences import store
from tests.browser import CHROMIUM, NEEDS_CHROMIUM
from tests.preferences.pages.test_pages_http import FLASH, link, message, tamper
from tests.support import Server

pytestmark = NEEDS_CHROMIUM

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect


def fits_the_screen_and_labels_every_control(page: Page) -> None:
    """Nothing is wider than the screen, and every control has an accessible name."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width}px wide on a 375px screen"
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, button')]
             .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                           && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
             .map(el => el.name || el.outerHTML)"""
    )
    assert unlabeled == []


def test_a_recipient_changes_preferences_and_the_next_notification_obeys(
    phone: Page, settings: Settings, server: Server, admin: httpx.Client, db: Database
) -> None:
    phone.goto(link(settings, server, "preferences"))
    expect(phone.get_by_role("heading", name="Notification preferences")).to_be_visible()
    fits_the_screen_and_labels_every_control(phone)
    expect(phone.get_by_label("Receive “Order delivered”")).to_have_count(0)  # locked
    phone.get_by_label("Email", exact=True).uncheck()
    phone.get_by_label("“Flash sales” by Push notifications").uncheck()
    phone.get_by_label("At most, for “Flash sales”").fill("1")
    phone.get_by_label("Receive “Member day”").uncheck()
    phone.get_by_label("From", exact=True).fill("23:00")
    phone.get_by_label("Until", exact=True).fill("07:00")
    phone.get_by_label("Sat", exact=True).uncheck()
    phone.get_by_role("button", name="Save preferences").click()

    saved = phone.locator("#saved")
    expect(saved).to_contain_text("Here's what changed")
    expect(saved).to_contain_text("“Flash sales” by Push notifications: off")
    expect(saved).to_contain_text("“Flash sales” limit: 1 per day")
    expect(saved).to_contain_text("Quiet hours: 23:00–07:00, Mon Tue Wed Thu Fri Sun")
    expect(
        phone.get_by_label("Email", exact=True)
    ).not_to_be_checked()  # the page shows the new state
    fits_the_screen_and_labels_every_control(phone)

    prefs = admin.get("/v1/recipients/u-1/preferences").json()
    assert prefs["channels"]["email"] is False
    assert prefs["categories"][FLASH]["channels"]["push"] is False
    assert prefs["categories"][FLASH]["caps"] == [{"count": 1, "per": "1d"}]
    assert prefs["categories"]["promo.member_day"]["enabled"] is False
    assert prefs["quiet_hours"]["start"] == "23:00" and prefs["quiet_hours"]["end"] == "07:00"
    assert "sat" not in prefs["quiet_hours"]["days"]

    # The very next notification obeys: push is off for flash sales, email is off everywhere,
    # and at 23:30 in Shanghai what is left for later waits for the quiet hours to end.
    with db.session() as session:
        recipient = session.get(Recipient, "u-1")
        flash = session.get(Category, FLASH)
        assert recipient is not None and flash is not None
        effective = store.load_one(session, recipient, settings=settings)
    monday_night = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Asia/Shanghai
    decisions = {
        d.channel: d
        for d in decide(
            rules_of(flash), Request(), effective, {"push", "inapp", "email"}, monday_night
        )
    }
    assert (decisions["push"].status, decisions["push"].reason) == ("suppressed", "opted_out")
    assert (decisions["email"].status, decisions["email"].reason) == ("suppressed", "opted_out")
    assert decisions["inapp"].status == "queued"
    member_day = rules_of(session_category(db, "promo.member_day"))
    assert {
        d.status for d in decide(member_day, Request(), effective, {"inapp", "email"}, monday_night)
    } == {"suppressed"}


def session_category(db: Database, key: str) -> Category:
    with db.session() as session:
        row = session.get(Category, key)
        assert row is not None
        return row


def test_the_inbox_marks_a_message_read_and_records_a_thumbs_down(
    phone: Page, settings: Settings, server: Server, db: Database, admin: httpx.Client
) -> None:
    older = message(db, title="Member day is here", category="promo.member_day")
    did = message(db, title="Flash sale tonight", notification_id=2)
    phone.goto(link(settings, server, "inbox"))
    expect(phone.locator("#unread-count")).to_have_text("2 unread")
    expect(phone.locator(".tabs .badge")).to_have_text("2")
    fits_the_screen_and_labels_every_control(phone)

    phone.get_by_role("button", name="Open “Flash sale tonight”").click()
    expect(phone.locator("#unread-count")).to_have_text("1 unread")
    expect(phone.locator(f"#m-{did}")).not_to_have_class("msg unread")
    with db.session() as session:
        assert session.get(Delivery, did).read_at is not None  # type: ignore[union-attr]
        assert session.get(Delivery, older).read_at is None  # type: ignore[union-attr]

    phone.locator(f"#m-{did}").get_by_role("button", name="Not useful").click()
    item = phone.locator(f"#m-{did}")
    expect(item.get_by_role("status")).to_contain_text(
        "Thanks. We'll send you fewer of these: at most 3 per week from now on."
    )
    expect(item.get_by_role("button", name="Not useful")).to_have_attribute("aria-pressed", "true")
    with db.session() as session:
        rating = session.exec(select(Feedback.rating).where(col(Feedback.delivery_id) == did)).one()
    assert rating == "down"

    # After 👎 the page suggests turning the category off, and one press does it.
    item.get_by_role("button", name="Turn off “Flash sales”").click()
    expect(phone.get_by_role("status").first).to_contain_text(
        "You won't get “Flash sales” any more."
    )
    assert (
        admin.get("/v1/recipients/u-1/preferences").json()["categories"][FLASH]["enabled"] is False
    )


def test_a_tampered_link_is_refused(phone: Page, settings: Settings, server: Server) -> None:
    url = link(settings, server, "preferences")
    response = phone.goto(tamper(url))
    assert response is not None and response.status == 403
    expect(phone.get_by_role("heading", name="This link doesn't work")).to_be_visible()
    expect(phone.get_by_text("Flash sales")).to_have_count(0)
    fits_the_screen_and_labels_every_control(phone)


def test_one_click_unsubscribe_with_a_plain_post(
    phone: Page, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    url = link(settings, server, "unsubscribe")
    phone.goto(url)  # a GET only asks
    expect(phone.get_by_role("heading", name="Stop all optional messages?")).to_be_visible()
    fits_the_screen_and_labels_every_control(phone)
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is False
    # What a mail client does for List-Unsubscribe-Post: a bare POST, no cookie, no CSRF token.
    answer = phone.request.post(url, form={"List-Unsubscribe": "One-Click"})
    assert answer.status == 200
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is True
    phone.goto(url)
    expect(phone.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
    phone.get_by_role("button", name="Resubscribe").click()
    expect(phone.locator("#saved")).to_contain_text("Optional messages are back on")
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is False


def test_the_pages_switch_language(phone: Page, settings: Settings, server: Server) -> None:
    phone.goto(link(settings, server, "inbox"))
    phone.get_by_role("link", name="中文").click()
    expect(phone.get_by_role("heading", name="消息中心")).to_be_visible()
    phone.get_by_role("link", name="通知设置").click()
    expect(phone.get_by_role("heading", name="通知偏好设置")).to_be_visible()
    assert phone.evaluate("document.documentElement.lang") == "zh-CN"
