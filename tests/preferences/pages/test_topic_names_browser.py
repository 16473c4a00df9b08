"""Followed topics show on the preference page by the name the platform gave them in the
reader's language, in a real browser; a topic nobody named shows by its key."""

from __future__ import annotations

import httpx

from engine.catalog import follows
from engine.settings import Settings
from engine.store.db import Database
from tests.browser import CHROMIUM, NEEDS_CHROMIUM
from tests.preferences.pages.test_pages_http import link
from tests.support import Server

pytestmark = NEEDS_CHROMIUM

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

CARD = "card.genshin-monthly"


def test_the_page_names_followed_topics_in_the_readers_language(
    phone: Page, settings: Settings, server: Server, admin: httpx.Client, db: Database
) -> None:
    named = admin.put(
        f"/v1/topics/{CARD}", json={"name": {"en": "Genshin monthly card", "zh-CN": "原神月卡"}}
    )
    assert named.status_code == 200, named.text
    with db.session() as session:
        follows.follow(session, "u-1", CARD)
        follows.follow(session, "u-1", "game.honkai")
    url = link(settings, server, "preferences")

    phone.goto(url + "?lang=zh-CN")
    shown = phone.locator("#follows")
    expect(shown).to_contain_text("原神月卡")
    expect(shown).not_to_contain_text(CARD)

    phone.goto(url)
    shown = phone.locator("#follows")
    expect(shown.locator(".follow-topic")).to_have_text(["Genshin monthly card", "game.honkai"])
    expect(shown).not_to_contain_text(CARD)
    phone.get_by_role("button", name="Unfollow Genshin monthly card").click()
    expect(phone.locator("#saved")).to_contain_text("No longer following Genshin monthly card")
    expect(phone.locator("#follows .follow-topic")).to_have_text(["game.honkai"])
    assert [f["topic"] for f in admin.get("/v1/recipients/u-1/follows").json()["items"]] == [
        "game.honkai"
    ]
