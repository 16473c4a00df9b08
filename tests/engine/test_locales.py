"""Locale matching: BCP 47 with script and region, whatever order the locales come in,
for template copy (through the real pipeline) and category names."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from engine.locales import choose, match
from tests.engine.conftest import Processes, recipient, send, settled, wait_for

# Reader → (with zh-TW, zh-CN and en, default en) and (with only zh-CN and en).
READERS = {
    "zh-SG": ("zh-CN", "zh-CN"),
    "zh-Hans": ("zh-CN", "zh-CN"),
    "zh-Hans-SG": ("zh-CN", "zh-CN"),
    "zh-CN": ("zh-CN", "zh-CN"),
    "zh": ("zh-CN", "zh-CN"),
    "zh-TW": ("zh-TW", "en"),
    "zh-HK": ("zh-TW", "en"),
    "zh-MO": ("zh-TW", "en"),
    "zh-Hant": ("zh-TW", "en"),
    "en-US": ("en", "en"),
    "en-GB": ("en", "en"),
    "fr-FR": ("en", "en"),
}


@pytest.mark.parametrize(("reader", "expected"), READERS.items())
@hypothesis_settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_the_best_locale_follows_script_and_region_in_any_order(
    reader: str, expected: tuple[str, str], data: st.DataObject
) -> None:
    three = data.draw(st.permutations(["zh-TW", "zh-CN", "en"]))
    two = data.draw(st.permutations(["zh-CN", "en"]))
    assert choose(reader, three, "en") == expected[0]
    assert choose(reader, two, "en") == expected[1]


def test_no_match_is_none_and_the_default_is_matched_too() -> None:
    assert match("ja", ["en", "zh-CN"]) is None
    assert match(None, ["en"]) is None
    assert match("zh-HK", ["zh-CN"]) is None  # not the other script
    assert choose("ja", ["en-GB", "zh-CN"], "en") == "en-GB"
    assert choose("ja", ["fr", "zh-CN"], "en") == "fr"  # nothing close: first in order
    assert choose("zh-HK", [], "en") is None


COPY = {
    # zh-TW first: a reader of Simplified Chinese must not get it because of that.
    "zh-TW": {"title": "繁體", "body": "正體中文"},
    "zh-CN": {"title": "简体", "body": "简体中文"},
    "en": {"title": "English", "body": "in English"},
}
TITLES = {"zh-TW": "繁體", "zh-CN": "简体", "en": "English"}


def _category(admin: httpx.Client, key: str, copy: dict[str, Any]) -> None:
    spec = {
        "name": {"en": "News", "zh-CN": "新闻", "zh-TW": "新聞"},
        "description": {"en": "What is new", "zh-CN": "最新动态"},
        "kind": "transactional",
        "priority": "high",
        "channels": ["inapp"],
        "default_locale": "en",
        "templates": {"inapp": copy},
    }
    admin.put(f"/v1/categories/{key}", json=spec).raise_for_status()


def test_each_reader_gets_the_copy_in_their_script(
    admin: httpx.Client, pipeline: Processes
) -> None:
    _category(admin, "news.three", COPY)
    _category(admin, "news.two", {k: v for k, v in COPY.items() if k != "zh-TW"})
    people = {f"r-{reader.lower()}": reader for reader in READERS}
    for rid, reader in people.items():
        recipient(admin, rid, locale=reader)
    for key, column in (("news.three", 0), ("news.two", 1)):
        nid = send(admin, category=key, to=sorted(people))
        view = wait_for(lambda nid=nid: settled(admin, nid))
        got = {d["recipient"]: d for d in view["deliveries"]}
        for rid, reader in people.items():
            inbox = admin.get(f"/v1/recipients/{rid}/inbox").json()["items"]
            title = next(m["title"] for m in inbox if m["notification_id"] == nid)
            assert title == TITLES[READERS[reader][column]], (key, reader)
            assert got[rid]["status"] == "delivered"
    # The category reads back as it was written, names and descriptions per locale.
    read = admin.get("/v1/categories").json()
    news = next(c for c in read["items"] if c["key"] == "news.three")
    assert news["name"] == {"en": "News", "zh-CN": "新闻", "zh-TW": "新聞"}
    assert news["description"] == {"en": "What is new", "zh-CN": "最新动态"}


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ({}, "name"),
        ({"en": ""}, "name.en"),
        ({"english": "News"}, "name"),
        ("", "name"),
    ],
)
def test_bad_names_are_refused_naming_the_field(admin: httpx.Client, name: Any, field: str) -> None:
    spec = {
        "name": name,
        "kind": "transactional",
        "priority": "high",
        "channels": ["inapp"],
        "templates": {"inapp": {"en": {"title": "t", "body": "b"}}},
    }
    answer = admin.put("/v1/categories/news.bad", json=spec)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith(field), answer.json()
