"""Delivery events pushed to a registered endpoint by real workers and a real scheduler:
a local aiohttp receiver verifies every request's Standard Webhooks signature on the raw
body with the secret the API showed once, and gets each event once with a stable id,
many events in few requests; a failing endpoint is retried, then paused with its reason
visible, and resumed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from engine.settings import Settings
from engine.store.db import Database
from tests.engine.conftest import Processes, recipient, send, wait_for
from tests.support import Server

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
INBOX: dict[str, Any] = {
    "name": "Member day",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Member day", "body": "for you"}}},
}


class Receiver:
    """An event endpoint that verifies each request's signature on its raw body and keeps
    the events of those that verify; `failing` answers 500 instead."""

    def __init__(self) -> None:
        self.secret = ""
        self.failing = False
        self.lock = threading.Lock()
        self.requests: list[dict[str, str]] = []
        self.rejected = 0
        self.events: list[dict[str, Any]] = []
        self.app = web.Application()
        self.app.router.add_post("/events", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self.lock:
            self.requests.append(headers)
        if self.failing:
            return web.Response(status=500, text="down for maintenance")
        try:
            document = Webhook(self.secret).verify(raw, headers)
        except WebhookVerificationError:
            with self.lock:
                self.rejected += 1
            return web.Response(status=401)
        with self.lock:
            self.events += document["data"]["events"]
        return web.Response(status=204)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == kind]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Fast retries, and a pause after three failed posts in a row."""
    return settings.model_copy(
        update={"events_retry_base": 0.2, "events_pause_after": 3, "events_max_attempts": 10}
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    endpoint = Receiver()
    server = Server(endpoint.app).start()
    yield endpoint, f"{server.url}/events"
    server.stop()


def register(admin: httpx.Client, receiver: Receiver, url: str, **extra: Any) -> dict[str, Any]:
    answer = admin.post("/v1/event-endpoints", json={"url": url, **extra})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    assert created["secret"].startswith("whsec_")
    receiver.secret = created["secret"]
    return created


@BOTH
def test_events_arrive_signed_batched_and_once(
    admin: httpx.Client, pipeline: Processes, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    created = register(admin, endpoint, url)
    listed = admin.get("/v1/event-endpoints").json()["items"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0] and listed[0]["paused"] is False

    admin.put("/v1/categories/promo.member_day", json=INBOX).raise_for_status()
    people = [f"u-{i:03d}" for i in range(150)]
    for start in (0, 50, 100):
        admin.post(
            "/v1/recipients/bulk",
            json={"recipients": [{"id": rid} for rid in people[start : start + 50]]},
        ).raise_for_status()
    nid = send(admin, category="promo.member_day", to={"all": True})
    wait_for(lambda: len(endpoint.of_type("delivery.delivered")) >= 150, timeout=60)

    delivered = endpoint.of_type("delivery.delivered")
    assert sorted(e["data"]["recipient"] for e in delivered) == people
    assert {e["data"]["notification_id"] for e in delivered} == {nid}
    assert {e["data"]["channel"] for e in delivered} == {"inapp"}
    # Many events, few requests: batches of up to 100.
    assert len(endpoint.requests) <= 4 and endpoint.rejected == 0

    # Engagement, feedback and an unsubscribe each arrive as their own type.
    first = delivered[0]["data"]
    admin.post(f"/v1/deliveries/{first['delivery_id']}/events", json={"type": "clicked"})
    admin.post(f"/v1/deliveries/{first['delivery_id']}/feedback", json={"rating": "down"})
    # people[1] unsubscribes through the link their message carried; people[2] elsewhere.
    (theirs,) = [e["data"]["delivery_id"] for e in delivered if e["data"]["recipient"] == people[1]]
    minted = admin.post(f"/v1/recipients/{people[1]}/links").json()["unsubscribe"]
    link = f"{urlsplit(minted).path}?d={theirs}"
    assert admin.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    admin.put(f"/v1/recipients/{people[2]}/preferences", json={"unsubscribed": True})
    wait_for(lambda: len(endpoint.of_type("recipient.unsubscribed")) == 2, timeout=30)
    wait_for(lambda: endpoint.of_type("feedback.created"), timeout=30)
    (clicked,) = wait_for(lambda: endpoint.of_type("delivery.clicked"), timeout=30)
    assert clicked["data"]["delivery_id"] == first["delivery_id"]
    (rated,) = endpoint.of_type("feedback.created")
    assert rated["data"]["rating"] == "down" and rated["data"]["recipient"] == first["recipient"]
    gone = sorted(
        (e["data"] for e in endpoint.of_type("recipient.unsubscribed")),
        key=lambda d: d["recipient"],
    )
    assert gone == [
        {"recipient": people[1], "delivery_id": theirs},
        {"recipient": people[2], "delivery_id": None},
    ]

    with endpoint.lock:
        ids = [e["id"] for e in endpoint.events]
        webhook_ids = [h["webhook-id"] for h in endpoint.requests]
    assert len(ids) == len(set(ids)), "an event arrived twice"
    assert len(webhook_ids) == len(set(webhook_ids))
    assert endpoint.rejected == 0


def test_only_the_types_asked_for_arrive(
    admin: httpx.Client, pipeline: Processes, receiver: tuple[Receiver, str]
) -> None:
    endpoint, url = receiver
    register(admin, endpoint, url, types=["recipient.unsubscribed"])
    admin.put("/v1/categories/promo.member_day", json=INBOX).raise_for_status()
    recipient(admin, "u-1")
    send(admin, category="promo.member_day", to=["u-1"])
    admin.put("/v1/recipients/u-1/preferences", json={"unsubscribed": True}).raise_for_status()
    wait_for(lambda: endpoint.of_type("recipient.unsubscribed"), timeout=30)
    with endpoint.lock:
        assert {e["type"] for e in endpoint.events} == {"recipient.unsubscribed"}


@BOTH
def test_a_failing_endpoint_is_retried_paused_with_its_reason_and_resumed(
    admin: httpx.Client, pipeline: Processes, receiver: tuple[Receiver, str], db: Database
) -> None:
    endpoint, url = receiver
    endpoint.failing = True
    created = register(admin, endpoint, url, types=["recipient.unsubscribed"])
    for rid in ("u-1", "u-2"):
        recipient(admin, rid)
    admin.put("/v1/recipients/u-1/preferences", json={"unsubscribed": True}).raise_for_status()

    def paused() -> dict[str, Any] | None:
        shown: dict[str, Any] = admin.get(f"/v1/event-endpoints/{created['id']}").json()
        return shown if shown["paused"] else None

    shown = wait_for(paused, timeout=60)
    assert "3 failed attempts in a row" in shown["pause_reason"]
    assert "HTTP 500" in shown["pause_reason"] and shown["pending_batches"] == 1
    attempts = len(endpoint.requests)
    assert attempts == 3  # the same batch, retried
    assert len({h["webhook-id"] for h in endpoint.requests}) == 1
    failures = admin.get(f"/v1/event-endpoints/{created['id']}/failures").json()["items"]
    assert failures[0]["status"] == "pending" and "HTTP 500" in failures[0]["last_error"]
    assert failures[0]["webhook_id"] == endpoint.requests[0]["webhook-id"]

    # Paused: events keep being kept, nothing is posted.
    admin.put("/v1/recipients/u-2/preferences", json={"unsubscribed": True}).raise_for_status()
    endpoint.failing = False
    resumed = admin.post(f"/v1/event-endpoints/{created['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    wait_for(lambda: len(endpoint.of_type("recipient.unsubscribed")) == 2, timeout=60)
    assert sorted(e["data"]["recipient"] for e in endpoint.of_type("recipient.unsubscribed")) == [
        "u-1",
        "u-2",
    ]
    # The receiver answers before the worker records the success.
    healthy = wait_for(
        lambda: (
            (e := admin.get(f"/v1/event-endpoints/{created['id']}").json())["last_success_at"] and e
        ),
        timeout=30,
    )
    assert healthy["failures"] == 0 and healthy["pending_batches"] == 0

    assert admin.delete(f"/v1/event-endpoints/{created['id']}").json()["deleted"] is True
    assert admin.get(f"/v1/event-endpoints/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://example.com/x", "types": ["delivery.teleported"]}, "types.0"),
        ({"url": "https://example.com/x", "types": []}, "types"),
        ({"url": "https://example.com/x", "types": ["feedback.created"] * 2}, "types"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"url": "https://example.com/x", "colour": "red"}, "colour"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_field(
    admin: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = admin.post("/v1/event-endpoints", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert admin.get("/v1/event-endpoints").json()["items"] == []


def test_event_endpoints_need_admin(server: Any, api_keys: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url) as client:
        for scope in ("read", "send"):
            auth = {"Authorization": f"Bearer {api_keys[scope]}"}
            assert client.get("/v1/event-endpoints", headers=auth).status_code == 403
            made = client.post(
                "/v1/event-endpoints", json={"url": "https://example.com/x"}, headers=auth
            )
            assert made.status_code == 403
