"""Follows over real HTTP: follow, list, unfollow, bulk follow, erasure, and who a topic
notification counts as its audience, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BOTH_BACKENDS = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
CARD = "card.genshin-monthly"


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: httpx.Response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    return str(error["message"])


@BOTH_BACKENDS
def test_follow_list_and_unfollow(admin: httpx.Client) -> None:
    ok(admin.put("/v1/recipients/u-1", json={"email": "u1@example.com"}))
    first = ok(admin.put(f"/v1/recipients/u-1/follows/{CARD}"))
    assert first["topic"] == CARD and first["created_at"]
    again = ok(admin.put(f"/v1/recipients/u-1/follows/{CARD}"))
    assert again == first  # following twice is one follow, from the first time
    ok(admin.put("/v1/recipients/u-1/follows/game.honkai"))
    listed = ok(admin.get("/v1/recipients/u-1/follows"))
    assert [f["topic"] for f in listed["items"]] == [CARD, "game.honkai"]

    assert ok(admin.delete(f"/v1/recipients/u-1/follows/{CARD}")) == {
        "topic": CARD,
        "followed": False,
    }
    assert [f["topic"] for f in ok(admin.get("/v1/recipients/u-1/follows"))["items"]] == [
        "game.honkai"
    ]
    refused(admin.delete(f"/v1/recipients/u-1/follows/{CARD}"), 404, "topic")


def test_follows_of_unknown_recipients_and_bad_topics_are_refused(admin: httpx.Client) -> None:
    refused(admin.put(f"/v1/recipients/nobody/follows/{CARD}"), 404, "id")
    refused(admin.get("/v1/recipients/nobody/follows"), 404, "id")
    refused(admin.delete(f"/v1/recipients/nobody/follows/{CARD}"), 404, "id")
    ok(admin.put("/v1/recipients/u-1", json={}))
    refused(admin.put("/v1/recipients/u-1/follows/" + "x" * 101), 422, "topic")
    refused(admin.put("/v1/recipients/u-1/follows/card%20with%20space"), 422, "topic")
    send = {"category": "promo.card", "to": {"topic": "bad topic"}}
    refused(admin.post("/v1/notifications", json=send), 422, "to.topic")
    send["to"] = {"topic": ""}
    refused(admin.post("/v1/notifications", json=send), 422, "to.topic")


@BOTH_BACKENDS
def test_bulk_follow_is_all_or_nothing(admin: httpx.Client) -> None:
    for rid in ("u-1", "u-2"):
        ok(admin.put(f"/v1/recipients/{rid}", json={}))
    follows = [
        {"recipient": "u-1", "topic": CARD},
        {"recipient": "u-2", "topic": CARD},
        {"recipient": "u-2", "topic": CARD},  # listed twice: one follow
        {"recipient": "ghost", "topic": CARD},
    ]
    message = refused(admin.post("/v1/follows/bulk", json={"follows": follows}), 422, "follows")
    assert "ghost" in message
    assert ok(admin.get("/v1/recipients/u-1/follows"))["items"] == []  # nothing was written
    assert ok(admin.post("/v1/follows/bulk", json={"follows": follows[:3]})) == {"followed": 2}
    assert ok(admin.post("/v1/follows/bulk", json={"follows": follows[:3]})) == {"followed": 0}
    assert [f["topic"] for f in ok(admin.get("/v1/recipients/u-2/follows"))["items"]] == [CARD]
    refused(
        admin.post("/v1/follows/bulk", json={"follows": [{"recipient": "u-1"}]}),
        422,
        "follows.0.topic",
    )
    too_many = [{"recipient": "u-1", "topic": f"t.{i}"} for i in range(51)]  # the test limit: 50
    refused(admin.post("/v1/follows/bulk", json={"follows": too_many}), 422, "follows")


@BOTH_BACKENDS
def test_a_topic_reaches_its_followers_and_erasing_forgets_their_follows(
    admin: httpx.Client,
) -> None:
    category = {
        "name": "Cards back in stock",
        "kind": "social",
        "priority": "normal",
        "channels": ["inapp"],
        "templates": {"inapp": {"en": {"title": "{{ data.card }} is back", "body": "."}}},
    }
    ok(admin.put("/v1/categories/social.card_back", json=category))
    for rid in ("u-1", "u-2", "u-3"):
        ok(admin.put(f"/v1/recipients/{rid}", json={}))
    for rid in ("u-1", "u-3"):
        ok(admin.put(f"/v1/recipients/{rid}/follows/{CARD}"))
    body = {"category": "social.card_back", "to": {"topic": CARD}, "data": {"card": "Genshin"}}
    assert ok(admin.post("/v1/notifications", json=body), 202)["recipients"] == 2

    ok(admin.delete("/v1/recipients/u-3"))
    ok(admin.put("/v1/recipients/u-3", json={}))  # a new person under the same id
    assert ok(admin.get("/v1/recipients/u-3/follows"))["items"] == []
    assert ok(admin.post("/v1/notifications", json=body), 202)["recipients"] == 1
    nobody = {**body, "to": {"topic": "card.nobody-follows"}}
    assert ok(admin.post("/v1/notifications", json=nobody), 202)["recipients"] == 0
