"""The sending API refuses bad input with a 4xx naming the field, and stores nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import select

from engine.store.db import Database
from engine.store.models import Notification

PROMO = {
    "name": "Flash sales",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["inapp", "email"],
    "templates": {"inapp": {"en": {"title": "Sale", "body": "today"}}},
}
GOOD: dict[str, Any] = {"category": "promo.sale", "to": ["u-1"]}


@pytest.fixture
def ready(admin: httpx.Client) -> httpx.Client:
    admin.put("/v1/categories/promo.sale", json=PROMO).raise_for_status()
    admin.put("/v1/categories/bare", json={**PROMO, "templates": {}}).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    return admin


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": None}, "category"),
        ({"category": "no.such"}, "category"),
        ({"to": []}, "to"),
        ({"to": "u-1"}, "to"),
        ({"to": ["u-1", "ghost"]}, "to"),
        ({"to": {"segment": {"tier": ["kraken"]}}}, "to"),
        ({"to": {"all": False}}, "to"),
        ({"channels": ["fax"]}, "channels.0"),
        ({"channels": ["push"]}, "channels.0"),
        ({"send_at": "2026-11-22T10:00:00"}, "send_at"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"send_at": 1796068487}, "send_at"),  # a number is not read as seconds since 1970
        ({"send_at": "1796068487"}, "send_at"),
        ({"send_at": True}, "send_at"),
        (
            {"send_at": "2026-11-22T10:00:00+00:00", "expires_at": "2026-11-22T09:00:00+00:00"},
            "expires_at",
        ),
        ({"content": {"body": "no title"}}, "content.title"),
        ({"content": {"title": "x", "action_url": "javascript:alert(1)"}}, "content.action_url"),
        ({"colour": "red"}, "colour"),
        ({"category": "bare"}, "content"),
    ],
)
def test_bad_notifications_are_refused_naming_the_field(
    ready: httpx.Client, db: Database, change: dict[str, Any], field: str
) -> None:
    body = {**GOOD, **change}
    body = {k: v for k, v in body.items() if v is not None}
    answer = ready.post("/v1/notifications", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"].startswith(field), answer.json()
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Notification)).one() == 0


def test_batch_is_all_or_nothing(ready: httpx.Client, db: Database) -> None:
    bad = ready.post(
        "/v1/notifications/batch", json={"notifications": [GOOD, {**GOOD, "to": ["ghost"]}]}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "notifications.1.to"
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Notification)).one() == 0
    too_many = ready.post("/v1/notifications/batch", json={"notifications": [GOOD] * 101})
    assert too_many.status_code == 422 and too_many.json()["error"]["field"] == "notifications"
    good = ready.post("/v1/notifications/batch", json={"notifications": [GOOD, GOOD]})
    assert good.status_code == 202 and len({i["id"] for i in good.json()["items"]}) == 2


def test_reading_back_validates_ids_and_paging(ready: httpx.Client) -> None:
    accepted = ready.post("/v1/notifications", json=GOOD).json()
    assert accepted == {"id": accepted["id"], "status": "accepted", "recipients": 1}
    assert ready.get("/v1/notifications/abc").status_code == 404
    assert ready.get("/v1/notifications/999999").status_code == 404
    limit = ready.get(f"/v1/notifications/{accepted['id']}", params={"limit": "lots"})
    assert limit.status_code == 422 and limit.json()["error"]["field"] == "limit"
    mismatch = ready.post(
        "/v1/notifications", json={**GOOD, "idempotency_key": "a"}, headers={"Idempotency-Key": "b"}
    )
    assert mismatch.status_code == 422 and mismatch.json()["error"]["field"] == "idempotency_key"
    assert ready.get("/v1/recipients/ghost/inbox").status_code == 404


def test_send_scope_can_send_but_not_define(
    server: Any, api_keys: dict[str, str], ready: httpx.Client
) -> None:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {api_keys['send']}"}
    ) as sender:
        assert sender.post("/v1/notifications", json=GOOD).status_code == 202
        assert sender.put("/v1/categories/x", json=PROMO).status_code == 403
        assert sender.get("/v1/notifications/1").status_code == 403


ORDER = {
    "name": "Order shipped",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "templates": {
        "inapp": {
            "en": {"title": "Order {{ data.order.id }} shipped", "body": "{{ data.carrier }}"},
            "zh-CN": {"title": "订单 {{ data.order.id }} 已发货", "body": "{{ data.carrier }}"},
        },
        "email": {
            "en": {
                "subject": "Shipped",
                "text": "{% for line in data.lines %}{{ line.name }} {% endfor %}"
                "{{ data.note | default('') }}{{ links.preferences }}",
            }
        },
    },
}
COMPLETE = {"order": {"id": "A-1"}, "carrier": "SF", "lines": [{"name": "card"}]}


@pytest.mark.parametrize(
    ("data", "field", "template"),
    [
        ({}, "data.order", "templates.inapp.en.title"),
        ({**COMPLETE, "order": {}}, "data.order.id", "templates.inapp.en.title"),
        ({k: v for k, v in COMPLETE.items() if k != "carrier"}, "data.carrier", ".body"),
        (
            {**COMPLETE, "lines": [{"name": "a"}, {}]},
            "data.lines.1.name",
            "templates.email.en.text",
        ),
    ],
)
def test_data_a_template_needs_is_checked_at_accept(
    ready: httpx.Client, db: Database, data: dict[str, Any], field: str, template: str
) -> None:
    ready.put("/v1/categories/order.shipped", json=ORDER).raise_for_status()
    answer = ready.post(
        "/v1/notifications", json={"category": "order.shipped", "to": ["u-1"], "data": data}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and template in error["message"], error
    assert field in error["message"]
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Notification)).one() == 0
    # Batches name the notification; complete data, or literal content, is accepted.
    batch = ready.post(
        "/v1/notifications/batch",
        json={"notifications": [{"category": "order.shipped", "to": ["u-1"], "data": data}]},
    )
    assert batch.json()["error"]["field"] == f"notifications.0.{field}"
    good = {"category": "order.shipped", "to": ["u-1"], "data": COMPLETE}
    assert ready.post("/v1/notifications", json=good).status_code == 202
    literal = {"category": "order.shipped", "to": ["u-1"], "content": {"title": "Shipped"}}
    assert ready.post("/v1/notifications", json=literal).status_code == 202


def test_only_the_templates_of_the_channels_asked_for_are_checked(ready: httpx.Client) -> None:
    ready.put("/v1/categories/order.shipped", json=ORDER).raise_for_status()
    inbox_data = {"order": {"id": "A-1"}, "carrier": "SF"}  # no lines: only email needs them
    body = {"category": "order.shipped", "to": ["u-1"], "data": inbox_data}
    assert ready.post("/v1/notifications", json={**body, "channels": ["inapp"]}).status_code == 202
    refused = ready.post("/v1/notifications", json=body)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "data.lines"


def test_a_best_time_send_reads_back_as_one(ready: httpx.Client) -> None:
    latest = "2026-12-24T12:00:00+00:00"
    sent = ready.post("/v1/notifications", json={**GOOD, "send_at": "best", "latest_at": latest})
    assert sent.status_code == 202, sent.text
    nid = sent.json()["id"]
    one = ready.get(f"/v1/notifications/{nid}").json()
    assert (one["send_at"], one["latest_at"]) == ("best", latest)
    listed = ready.get("/v1/notifications").json()["items"]
    assert [n["send_at"] for n in listed if n["id"] == nid] == ["best"]
    at_once = ready.post("/v1/notifications", json=GOOD).json()["id"]
    assert ready.get(f"/v1/notifications/{at_once}").json()["send_at"] is None
