"""Recipient writes over real HTTP: their own `recipients` scope, recipient objects in a
send's `to` (created or updated in the notification's transaction), and a refusal that
lists every unknown id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.catalog import keys
from engine.store.db import Database
from tests.support import Server

NEWS = {
    "name": "News",
    "kind": "service",
    "priority": "normal",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Hello"}}},
}


@pytest.fixture
def clients(
    server: Server, admin: httpx.Client, db: Database, api_keys: dict[str, str]
) -> Iterator[dict[str, httpx.Client]]:
    """A client per scope, one for `send` + `recipients` (a backend that syncs its users
    as it sends), and the admin; a category and one recipient exist."""
    admin.put("/v1/categories/news", json=NEWS).raise_for_status()
    admin.put("/v1/recipients/u-1", json={"email": "one@example.com"}).raise_for_status()
    with db.session() as session:
        both = keys.create(session, name="backend", scopes=["send", "recipients"])[1]
    made = {**api_keys, "backend": both}
    opened = {
        name: httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        for name, key in made.items()
    }
    yield {**opened, "admin": admin}
    for client in opened.values():
        client.close()


def status_and_error(answer: httpx.Response) -> tuple[int, dict[str, Any]]:
    body = answer.json() if answer.status_code >= 400 else {}
    return answer.status_code, body.get("error", {})


def test_the_recipients_scope_writes_recipients_and_nothing_else(
    clients: dict[str, httpx.Client],
) -> None:
    sync = clients["recipients"]
    assert sync.put("/v1/recipients/u-2", json={"email": "two@example.com"}).status_code == 200
    bulk = sync.post("/v1/recipients/bulk", json={"recipients": [{"id": "u-3"}, {"id": "u-4"}]})
    assert bulk.json() == {"upserted": 2}
    quiet = {"quiet_hours": {"enabled": True, "start": "22:00", "end": "07:00"}}
    assert sync.put("/v1/recipients/u-2/preferences", json=quiet).status_code == 200
    assert sync.delete("/v1/recipients/u-4").json() == {"id": "u-4", "erased": True}

    for method, path, body in (
        ("PUT", "/v1/categories/other", NEWS),
        ("POST", "/v1/notifications", {"category": "news", "to": ["u-2"]}),
        ("GET", "/v1/keys", None),
        ("POST", "/v1/recipients/u-2/links", None),
    ):
        code, error = status_and_error(sync.request(method, path, json=body))
        assert (code, error["field"]) == (403, "Authorization"), (method, path)

    send = clients["send"]
    for method, path, body in (
        ("PUT", "/v1/recipients/u-9", {}),
        ("POST", "/v1/recipients/bulk", {"recipients": [{"id": "u-9"}]}),
        ("DELETE", "/v1/recipients/u-1", None),
        ("PUT", "/v1/recipients/u-1/preferences", quiet),
    ):
        code, error = status_and_error(send.request(method, path, json=body))
        assert (code, error["field"]) == (403, "Authorization"), (method, path)
    assert clients["read"].get("/v1/recipients/u-9").status_code == 404


def test_recipient_objects_in_to_are_written_with_the_notification(
    clients: dict[str, httpx.Client],
) -> None:
    backend, read = clients["backend"], clients["read"]
    new = {"id": "u-new", "email": "new@example.com", "timezone": "Asia/Shanghai", "tags": ["vip"]}
    answer = backend.post(
        "/v1/notifications",
        json={"category": "news", "to": ["u-1", new, {"id": "u-2", "locale": "zh-CN"}]},
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["recipients"] == 3
    created = read.get("/v1/recipients/u-new").json()
    assert (created["email"], created["timezone"], created["tags"]) == (
        "new@example.com",
        "Asia/Shanghai",
        ["vip"],
    )
    assert read.get("/v1/recipients/u-2").json()["locale"] == "zh-CN"

    status = read.get(f"/v1/notifications/{answer.json()['id']}").json()
    assert status["recipients"] == 3

    # An existing recipient given as an object keeps what the object leaves out.
    again = backend.post(
        "/v1/notifications", json={"category": "news", "to": [{"id": "u-new", "tags": ["gold"]}]}
    )
    assert again.status_code == 202
    updated = read.get("/v1/recipients/u-new").json()
    assert (updated["email"], updated["tags"]) == ("new@example.com", ["gold"])


def test_a_refused_send_writes_no_recipient(clients: dict[str, httpx.Client]) -> None:
    backend, read = clients["backend"], clients["read"]
    fresh = {"id": "u-fresh", "email": "fresh@example.com"}
    for body, field in (
        ({"category": "no.such", "to": [fresh]}, "category"),
        ({"category": "news", "to": [fresh, "ghost"]}, "to"),
        ({"category": "news", "to": [fresh], "channels": ["email"]}, "channels.0"),
    ):
        code, error = status_and_error(backend.post("/v1/notifications", json=body))
        assert (code, error["field"]) == (422, field), error
        assert read.get("/v1/recipients/u-fresh").status_code == 404

    batch = backend.post(
        "/v1/notifications/batch",
        json={
            "notifications": [
                {"category": "news", "to": [fresh]},
                {"category": "news", "to": ["ghost"]},
            ]
        },
    )
    assert status_and_error(batch) == (
        422,
        {**batch.json()["error"], "field": "notifications.1.to"},
    )
    assert read.get("/v1/recipients/u-fresh").status_code == 404


def test_writing_recipients_through_to_needs_the_recipients_scope(
    clients: dict[str, httpx.Client],
) -> None:
    send, read = clients["send"], clients["read"]
    code, error = status_and_error(
        send.post("/v1/notifications", json={"category": "news", "to": [{"id": "u-sneak"}]})
    )
    assert (code, error["field"]) == (403, "to") and "recipients" in error["message"]
    code, error = status_and_error(
        send.post(
            "/v1/notifications/batch",
            json={
                "notifications": [
                    {"category": "news", "to": ["u-1"]},
                    {"category": "news", "to": ["u-1", {"id": "u-sneak"}]},
                ]
            },
        )
    )
    assert (code, error["field"]) == (403, "notifications.1.to")
    assert read.get("/v1/recipients/u-sneak").status_code == 404
    # Ids alone still only need `send`.
    assert (
        send.post("/v1/notifications", json={"category": "news", "to": ["u-1"]}).status_code == 202
    )


def test_recipient_objects_are_checked_like_any_recipient_write(
    clients: dict[str, httpx.Client],
) -> None:
    backend = clients["backend"]
    for to, field in (
        (["u-1", {"id": "u-x", "email": "not-an-address"}], "to.1.email"),
        ([{"id": "u-x", "colour": "red"}], "to.0.colour"),
        ([{"email": "no-id@example.com"}], "to.0.id"),
        (["u-1", {"id": "u-1", "email": "twice@example.com"}], "to.1"),
        ([7], "to.0"),
        (
            [{"id": "u-x", "webhook_url": "http://169.254.169.254/latest/meta-data"}],
            "to.0.webhook_url",
        ),
    ):
        code, error = status_and_error(
            backend.post("/v1/notifications", json={"category": "news", "to": to})
        )
        assert (code, error["field"]) == (422, field), (to, error)
    assert clients["read"].get("/v1/recipients/u-x").status_code == 404


def test_a_refusal_for_unknown_ids_lists_every_one(clients: dict[str, httpx.Client]) -> None:
    missing = [f"ghost-{n:02d}" for n in range(25)]
    answer = clients["send"].post(
        "/v1/notifications", json={"category": "news", "to": ["u-1", *missing]}
    )
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert (error["code"], error["field"], error["unknown"]) == (
        "unknown_recipients",
        "to",
        missing,
    )
    assert all(repr(rid) in error["message"] for rid in missing)
