"""`/v1/topics/{key}`: name a topic once or per locale, read it back, forget it."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_topic_is_named_renamed_read_and_forgotten(admin: httpx.Client) -> None:
    url = "/v1/topics/card.genshin-monthly"
    assert admin.get(url).status_code == 404
    first = admin.put(url, json={"name": "Genshin monthly card"})
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "Genshin monthly card"
    names = {"en": "Genshin monthly card", "zh-CN": "原神月卡"}
    renamed = admin.put(url, json={"name": names, "default_locale": "zh-CN"})
    assert renamed.status_code == 200
    got = admin.get(url).json()
    assert (got["key"], got["name"], got["default_locale"]) == (
        "card.genshin-monthly",
        names,
        "zh-CN",
    )
    assert admin.delete(url).json() == {"key": "card.genshin-monthly", "deleted": True}
    assert admin.get(url).status_code == 404
    assert admin.delete(url).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/topics/card.x", {}, "name"),
        ("/v1/topics/card.x", {"name": ""}, "name"),
        ("/v1/topics/card.x", {"name": {"Klingon!": "x"}}, "name"),
        ("/v1/topics/card.x", {"name": "x", "colour": "red"}, "colour"),
        ("/v1/topics/bad%20key", {"name": "x"}, "key"),
    ],
)
def test_a_bad_topic_is_refused_naming_the_field(
    admin: httpx.Client, path: str, body: dict[str, object], field: str
) -> None:
    answer = admin.put(path, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith(field)


def test_naming_a_topic_needs_the_admin_scope(
    api_keys: dict[str, str], admin: httpx.Client
) -> None:
    url = str(admin.base_url)
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {api_keys['read']}"}
    ) as reader:
        assert reader.put("/v1/topics/card.x", json={"name": "x"}).status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_topics_are_listed_named_or_followed_with_their_followers(admin: httpx.Client) -> None:
    for rid in ("u-1", "u-2", "u-3"):
        admin.put(f"/v1/recipients/{rid}", json={}).raise_for_status()
    admin.put("/v1/topics/card.genshin-monthly", json={"name": {"zh-CN": "原神月卡"}})
    admin.put("/v1/topics/brand.nobody-follows", json={"name": "Quiet brand"})
    for rid in ("u-1", "u-2"):
        admin.put(f"/v1/recipients/{rid}/follows/card.genshin-monthly").raise_for_status()
    admin.put("/v1/recipients/u-3/follows/game.unnamed").raise_for_status()

    first = admin.get("/v1/topics", params={"limit": 2})
    assert first.status_code == 200, first.text
    rest = admin.get("/v1/topics", params={"limit": 2, "after": first.json()["next"]}).json()
    assert rest["next"] is None
    listed = {t["key"]: (t["name"], t["followers"]) for t in first.json()["items"] + rest["items"]}
    assert listed == {
        "brand.nobody-follows": ("Quiet brand", 0),
        "card.genshin-monthly": ({"zh-CN": "原神月卡"}, 2),
        "game.unnamed": (None, 1),
    }
    keys = [t["key"] for t in first.json()["items"] + rest["items"]]
    assert keys == sorted(keys)
    assert admin.get("/v1/topics", params={"after": "bad key!"}).status_code == 422
