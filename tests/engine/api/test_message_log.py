"""The message log over HTTP: notifications newest first with counts and filters, one
delivery with its history, recipients by prefix and segment; bad parameters are a 422
naming the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engine.pipeline import planning
from engine.settings import Settings
from engine.store.db import Database
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime

INBOX = {
    "name": "Orders",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Order {{ data.order }}", "body": "on its way"}}},
}


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


@pytest.fixture
def shop(admin: httpx.Client) -> httpx.Client:
    admin.put("/v1/categories/orders", json=INBOX).raise_for_status()
    admin.put("/v1/categories/promo", json={**INBOX, "kind": "promotional"}).raise_for_status()
    for rid in ("u-1", "u-2", "u-3"):
        admin.put(f"/v1/recipients/{rid}", json={}).raise_for_status()
    return admin


def send(client: httpx.Client, category: str, to: list[str]) -> str:
    answer = client.post(
        "/v1/notifications", json={"category": category, "to": to, "data": {"order": 7}}
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_notifications_are_listed_newest_first_with_their_counts(
    shop: httpx.Client, rt: Runtime
) -> None:
    first = send(shop, "orders", ["u-1", "u-2"])
    planning.plan(rt, int(first))
    second = send(shop, "promo", ["u-3"])  # accepted, not planned yet

    listed = shop.get("/v1/notifications").json()
    assert [n["id"] for n in listed["items"]] == [second, first]
    newest, oldest = listed["items"]
    assert newest["status"] == "accepted" and newest["counts"]["delivered"] == 0
    assert oldest["status"] == "done" and oldest["counts"]["delivered"] == 2
    assert oldest["audience"] == {"type": "ids", "recipients": 2, "segment": None, "topic": None}
    assert listed["next"] is None


def test_filters_select_by_category_status_and_time(shop: httpx.Client, rt: Runtime) -> None:
    order = send(shop, "orders", ["u-1"])
    planning.plan(rt, int(order))
    promo = send(shop, "promo", ["u-2"])

    def ids(**params: Any) -> list[str]:
        answer = shop.get("/v1/notifications", params=params)
        assert answer.status_code == 200, answer.text
        return [n["id"] for n in answer.json()["items"]]

    assert ids(category="promo") == [promo]
    assert ids(status="done") == [order]
    assert ids(status="accepted") == [promo]
    assert ids(status="planning") == []
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    earlier = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert ids(created_after=later) == []
    assert ids(created_after=earlier) == [promo, order]
    assert ids(created_before=earlier) == []
    # An offset other than UTC means the same instant.
    shanghai = (datetime.now(UTC) + timedelta(hours=1)).astimezone(
        __import__("zoneinfo").ZoneInfo("Asia/Shanghai")
    )
    assert ids(created_before=shanghai.isoformat()) == [promo, order]


def test_paging_walks_every_notification_once(shop: httpx.Client) -> None:
    sent = [send(shop, "orders", ["u-1"]) for _ in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = shop.get(
            "/v1/notifications", params={"limit": 3, **({"before": cursor} if cursor else {})}
        ).json()
        seen += [n["id"] for n in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(sent))


def test_a_delivery_shows_its_history_and_copy(shop: httpx.Client, rt: Runtime) -> None:
    notification = send(shop, "orders", ["u-1"])
    planning.plan(rt, int(notification))
    (delivery,) = shop.get(f"/v1/notifications/{notification}").json()["deliveries"]
    shop.post(f"/v1/deliveries/{delivery['id']}/events", json={"type": "read"}).raise_for_status()

    shown = shop.get(f"/v1/deliveries/{delivery['id']}")
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["notification_id"] == notification and body["recipient"] == "u-1"
    assert body["status"] == "read" and body["title"] == "Order 7"
    assert [e["status"] for e in body["events"]] == ["queued", "delivered", "read"]
    assert shop.get("/v1/deliveries/999999").status_code == 404
    assert shop.get("/v1/deliveries/nope").status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/notifications", {"status": "gone"}, "status"),
        ("/v1/notifications", {"created_after": "yesterday"}, "created_after"),
        ("/v1/notifications", {"created_before": "2026-11-30T10:00:00"}, "created_before"),
        ("/v1/notifications", {"limit": "0"}, "limit"),
        ("/v1/notifications", {"before": "-1"}, "before"),
        ("/v1/notifications", {"category": "has space"}, "category"),
        ("/v1/recipients", {"tier": "kraken"}, "tier"),
        ("/v1/recipients", {"activity": "asleep"}, "activity"),
        ("/v1/recipients", {"prefix": ""}, "prefix"),
        ("/v1/recipients", {"limit": "1001"}, "limit"),
    ],
)
def test_bad_parameters_are_refused_naming_them(
    shop: httpx.Client, path: str, params: dict[str, str], field: str
) -> None:
    answer = shop.get(path, params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


def test_reads_need_the_read_scope(server: Any, api_keys: dict[str, str]) -> None:
    for path in ("/v1/notifications", "/v1/recipients", "/v1/deliveries/1"):
        with httpx.Client(base_url=server.url) as client:
            assert client.get(path).status_code == 401
            sender = client.get(path, headers={"Authorization": f"Bearer {api_keys['send']}"})
            assert sender.status_code == 403, path
            reader = client.get(path, headers={"Authorization": f"Bearer {api_keys['read']}"})
            assert reader.status_code in (200, 404), path


def test_recipients_by_prefix_are_case_sensitive_and_literal(admin: httpx.Client) -> None:
    for rid in ("a_1", "ab1", "A_2", "a.3", "b-1"):
        admin.put(f"/v1/recipients/{rid}", json={}).raise_for_status()

    def ids(**params: Any) -> list[str]:
        answer = admin.get("/v1/recipients", params=params)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["items"]]

    assert ids(prefix="a_") == ["a_1"]
    assert ids(prefix="a%") == []
    assert ids(prefix="A") == ["A_2"]
    assert ids(prefix="a") == ["a.3", "a_1", "ab1"]


def test_recipients_by_segment_and_paging(admin: httpx.Client) -> None:
    now = datetime.now(UTC)
    people = {
        "w-active": {"annual_spend": 9000, "last_active_at": now.isoformat(), "tags": ["game"]},
        "w-asleep": {
            "annual_spend": 6000,
            "last_active_at": (now - timedelta(days=12)).isoformat(),
        },
        "m-gone": {"annual_spend": 10, "tags": ["game", "video"]},
    }
    for rid, fields in people.items():
        admin.put(f"/v1/recipients/{rid}", json=fields).raise_for_status()

    def ids(**params: Any) -> list[str]:
        return [r["id"] for r in admin.get("/v1/recipients", params=params).json()["items"]]

    assert ids(tier="whale") == ["w-active", "w-asleep"]
    assert ids(tier="whale", activity="sleeping") == ["w-asleep"]
    assert ids(activity="churned") == ["m-gone"]
    assert ids(tag="game") == ["m-gone", "w-active"]
    assert ids(tag="video", tier="whale") == []
    first = admin.get("/v1/recipients", params={"limit": 2}).json()
    assert [r["id"] for r in first["items"]] == ["m-gone", "w-active"]
    assert first["items"][0]["tier"] == "minnow"
    rest = admin.get("/v1/recipients", params={"limit": 2, "after": first["next"]}).json()
    assert [r["id"] for r in rest["items"]] == ["w-asleep"] and rest["next"] is None
