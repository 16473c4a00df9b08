"""The preference center lists what the recipient follows and lets them drop a follow,
with a plain form post (CSRF-protected), in English and Chinese."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from engine.catalog import follows
from engine.settings import Settings
from engine.store.db import Database
from tests.preferences.pages.test_pages_http import Forms, link, seed, text
from tests.support import Server

CARD = "card.genshin-monthly"


@pytest.fixture
def web(server: Server, db: Database) -> Iterator[httpx.Client]:
    seed(db)
    with db.session() as session:
        follows.follow(session, "u-1", CARD)
        follows.follow(session, "u-1", "game.honkai")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def unfollow_form(page: str, topic: str) -> tuple[str, dict[str, str]]:
    for form in Forms(page).forms:
        fields = dict(form["fields"])
        if fields.get("action") == "unfollow" and fields.get("topic") == topic:
            return str(form["action"]), fields
    raise AssertionError(f"no unfollow form for {topic}")


def test_the_page_lists_follows_and_drops_one(
    web: httpx.Client, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    url = link(settings, server, "preferences")
    page = web.get(url)
    assert "What you follow" in text(page)
    assert CARD in text(page) and "game.honkai" in text(page)
    action, fields = unfollow_form(page.text, CARD)
    done = web.post(action, data=fields)
    assert done.status_code == 303
    shown = web.get(done.headers["Location"])
    assert f"No longer following {CARD}" in text(shown)
    assert [f["topic"] for f in admin.get("/v1/recipients/u-1/follows").json()["items"]] == [
        "game.honkai"
    ]
    # The dropped follow is gone from the page; the other stays.
    assert unfollow_form(shown.text, "game.honkai")
    with pytest.raises(AssertionError):
        unfollow_form(shown.text, CARD)

    chinese = web.get(url + "?lang=zh-CN")
    assert "我的关注" in text(chinese) and "取消关注" in text(chinese)


def test_dropping_a_follow_needs_the_csrf_token(
    web: httpx.Client, settings: Settings, server: Server, admin: httpx.Client
) -> None:
    action, fields = unfollow_form(web.get(link(settings, server, "preferences")).text, CARD)
    for token in (None, "forged"):
        forged = {k: v for k, v in fields.items() if k != "csrf_token"}
        if token:
            forged["csrf_token"] = token
        refused = web.post(action, data=forged)
        assert refused.status_code == 403
    assert len(admin.get("/v1/recipients/u-1/follows").json()["items"]) == 2


def test_a_page_without_follows_has_no_follows_section(
    server: Server, db: Database, settings: Settings
) -> None:
    seed(db, rid="u-2")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get(link(settings, server, "preferences", "u-2"))
    assert page.status_code == 200 and "What you follow" not in text(page)
