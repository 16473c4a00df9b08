"""A client built from `/v1/openapi.json` alone runs the API walk-through.

The client below knows nothing of Tidings' code: it reads the published document, finds
each operation by its id, builds the URL and headers from the documented parameters,
checks what it sends against the documented request schema, and checks every answer
(status, content type, headers, body) against the documented responses with a JSON
Schema validator.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import pytest

from engine.api.app import create_app
from engine.api.contract import contract_of
from engine.settings import Settings
from engine.store.db import Database
from engine.store.states import DeliveryStatus, Engagement, EventStatus, NotificationStatus, Reason
from tests.engine.conftest import Processes
from tests.support import Server

PAGES = ("/p/", "/u/", "/inbox/", "/assets/", "/console")


class DocumentClient:
    """Calls operations by `operationId`, as documented, and checks the answers."""

    def __init__(self, base_url: str, key: str | None = None) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.document = self.http.get("/v1/openapi.json").raise_for_status().json()
        jsonschema.Draft202012Validator.check_schema(
            {"$defs": self.document["components"]["schemas"]}
        )
        self.key = key
        self.operations = {
            op["operationId"]: (method.upper(), path, op)
            for path, item in self.document["paths"].items()
            for method, op in item.items()
        }
        self.calls: list[tuple[str, int]] = []

    def _check(self, schema: dict[str, Any], value: Any, what: str) -> None:
        root = {**schema, "components": self.document["components"]}
        errors = list(jsonschema.Draft202012Validator(root).iter_errors(value))
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}"

    def call(
        self,
        operation_id: str,
        *,
        path: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        key: str | None = None,
        off_schema: bool = False,
    ) -> tuple[int, Any, httpx.Headers]:
        """Call as documented; `off_schema` sends a body the document says is wrong."""
        method, template, op = self.operations[operation_id]
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        given = {("path", k): v for k, v in (path or {}).items()}
        given |= {("query", k): v for k, v in (query or {}).items()}
        given |= {("header", k): v for k, v in (headers or {}).items()}
        for where_name, value in given.items():
            assert where_name in params, f"{operation_id} documents no {where_name}"
            self._check(
                params[where_name]["schema"],
                _typed(params[where_name]["schema"], value),
                str(where_name),
            )
        for (where, name), param in params.items():
            if param.get("required"):
                assert (where, name) in given, f"{operation_id} needs {where} {name}"
        url = re.sub(r"\{(\w+)\}", lambda m: quote((path or {})[m.group(1)], safe=""), template)
        send_headers = dict(headers or {})
        if op.get("security"):
            assert self.document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
            send_headers["Authorization"] = f"Bearer {key or self.key}"
        if body is not None and not off_schema:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            self._check(schema, body, f"{operation_id} request")
        answer = self.http.request(method, url, params=query, headers=send_headers, json=body)
        documented = op["responses"].get(str(answer.status_code)) or op["responses"]["default"]
        media = answer.headers["content-type"].split(";")[0]
        assert media in documented["content"], (operation_id, answer.status_code, media)
        parsed = answer.json() if media == "application/json" else answer.text
        self._check(
            documented["content"][media]["schema"], parsed, f"{operation_id} {answer.status_code}"
        )
        for name in answer.headers:
            if name.lower().startswith("idempotent"):
                assert name.lower() in {h.lower() for h in documented.get("headers", {})}
        self.calls.append((operation_id, answer.status_code))
        return answer.status_code, parsed, answer.headers


def _typed(schema: dict[str, Any], value: str) -> Any:
    """A query or path value as the type its schema names (they travel as text)."""
    return int(value) if schema.get("type") == "integer" else value


@pytest.fixture
def client(server: Server, api_keys: dict[str, str]) -> DocumentClient:
    """A client over the API as served, knowing only its address and an admin key."""
    return DocumentClient(server.url, api_keys["admin"])


def test_every_api_route_declares_its_contract(settings: Settings, db: Database) -> None:
    app = create_app(settings, database=db)
    missing = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        and not route.resource.canonical.startswith(PAGES)
        and contract_of(route.handler) is None
    ]
    assert not missing


def test_the_document_is_openapi_3_1_and_leaves_pages_out(client: DocumentClient) -> None:
    document = client.document
    assert document["openapi"].startswith("3.1")
    assert not [p for p in document["paths"] if p.startswith(PAGES)]
    bulk = document["paths"]["/v1/recipients/bulk"]["post"]["requestBody"]["content"]
    bulk_schema = document["components"]["schemas"][
        bulk["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    ]
    assert bulk_schema["properties"]["recipients"]["type"] == "array"
    send = document["paths"]["/v1/notifications"]["post"]
    assert "202" in send["responses"] and "200" not in send["responses"]
    for rating in ("feedback", "events"):  # refused on what never arrived: a documented 409
        answers = document["paths"][f"/v1/deliveries/{{id}}/{rating}"]["post"]["responses"]
        assert "not_delivered" in answers["409"]["description"], answers.keys()
    assert {(p["in"], p["name"]) for p in send["parameters"]} == {("header", "Idempotency-Key")}
    page = {p["name"]: p for p in document["paths"]["/v1/notifications/{id}"]["get"]["parameters"]}
    assert set(page) == {"id", "limit", "after"}
    assert page["id"]["schema"]["pattern"] == "^[0-9]{1,18}$"
    assert page["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    stats = {p["name"] for p in document["paths"]["/v1/stats"]["get"]["parameters"]}
    assert stats == {"by", "from", "to", "category", "campaign", "notification"}
    campaigns = document["paths"]["/v1/campaigns"]
    assert "202" in campaigns["post"]["responses"] and "200" in campaigns["get"]["responses"]
    cancel = document["paths"]["/v1/campaigns/{id}/cancel"]["post"]["responses"]
    assert "finished" in cancel["409"]["description"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorOut"
            }, (method, path)
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert "pattern" in param["schema"], (method, path, param)


def test_the_document_enumerates_every_status_and_reason_a_client_can_receive(
    client: DocumentClient,
) -> None:
    """A client generated from the document knows each status and reason by name, and
    its validator refuses one the product does not have."""
    schemas = client.document["components"]["schemas"]
    for enum in (DeliveryStatus, EventStatus, NotificationStatus, Reason, Engagement):
        assert schemas[enum.__name__]["enum"] == [m.value for m in enum], enum.__name__
    notification = client.operations["get_notification"][2]["responses"]["200"]
    shown = notification["content"]["application/json"]["schema"]
    root = {**shown, "components": client.document["components"]}
    validator = jsonschema.Draft202012Validator(root)
    delivery = {
        "id": "1",
        "notification_id": "1",
        "recipient": "u-1",
        "channel": "email",
        "category": "promo",
        "status": "suppressed",
        "reason": "quiet_hours",
        "due_at": None,
        "error": None,
        "attempts": 0,
        "provider_id": None,
        "read_at": None,
        "created_at": None,
        "events": [{"status": "retrying", "at": None}],
    }
    answer = {
        "id": "1",
        "category": "promo",
        "status": "done",
        "recipients": 1,
        "send_at": None,
        "expires_at": None,
        "collapse_key": None,
        "created_at": None,
        "counts": {"suppressed": 1},
        "deliveries": [delivery],
        "next": None,
    }
    assert not list(validator.iter_errors(answer))
    for wrong in (
        {**answer, "status": "finished"},
        {**answer, "counts": {"suppresed": 1}},
        {**answer, "deliveries": [{**delivery, "status": "delivred"}]},
        {**answer, "deliveries": [{**delivery, "reason": "opted-out"}]},
        {**answer, "deliveries": [{**delivery, "events": [{"status": "sending", "at": None}]}]},
    ):
        assert list(validator.iter_errors(wrong)), wrong


def test_the_walkthrough_runs_from_the_document_alone(
    client: DocumentClient, api_keys: dict[str, str], pipeline: Processes
) -> None:
    send, read = api_keys["send"], api_keys["read"]
    status, category, _ = client.call(
        "put_category",
        path={"key": "order.shipped"},
        body={
            "name": "Order shipped",
            "kind": "service",  # not the critical queue, whose counter other tests read
            "priority": "high",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "Order {{ data.order }} is on its way"}}},
        },
    )
    assert status == 200 and category["key"] == "order.shipped"
    assert client.call("list_categories", key=read)[1]["items"][0]["key"] == "order.shipped"
    assert client.call("get_category", path={"key": "order.shipped"}, key=read)[0] == 200

    status, recipient, _ = client.call(
        "put_recipient",
        path={"id": "u-1"},
        body={"email": "ana@example.com", "timezone": "Asia/Shanghai"},
    )
    assert status == 200 and recipient["email"] == "ana@example.com"
    status, bulk, _ = client.call(
        "bulk_recipients", body={"recipients": [{"id": "u-2", "locale": "en"}, {"id": "u-3"}]}
    )
    assert (status, bulk) == (200, {"upserted": 2})

    status, accepted, headers = client.call(
        "post_notification",
        headers={"Idempotency-Key": "order-1001"},
        body={"category": "order.shipped", "to": ["u-1", "u-2"], "data": {"order": 1001}},
        key=send,
    )
    assert status == 202 and accepted["recipients"] == 2
    status, again, headers = client.call(
        "post_notification",
        headers={"Idempotency-Key": "order-1001"},
        body={"category": "order.shipped", "to": ["u-1", "u-2"], "data": {"order": 1001}},
        key=send,
    )
    assert (status, again["id"], headers["Idempotent-Replayed"]) == (202, accepted["id"], "true")
    status, batch, _ = client.call(
        "post_batch",
        body={
            "notifications": [{"category": "order.shipped", "to": ["u-3"], "data": {"order": 7}}]
        },
        key=send,
    )
    assert status == 202 and len(batch["items"]) == 1
    # A recipient given as an object is created with the notification (admin has every scope).
    new = {"id": "u-5", "email": "eve@example.com", "locale": "en"}
    order = {"category": "order.shipped", "to": [new], "data": {"order": 8}}
    assert client.call("post_notification", body=order)[0] == 202
    assert client.call("get_recipient", path={"id": "u-5"}, key=read)[1]["email"] == new["email"]

    status, refused, _ = client.call(
        "post_notification",
        body={"category": "order.shipped", "to": {"segment": {"tier": "whale"}}},
        off_schema=True,
        key=send,
    )
    assert status == 422 and refused["error"]["field"] == "to.segment.tier"

    deadline = time.monotonic() + 30
    while True:  # the workers deliver to the inbox
        status, notification, _ = client.call(
            "get_notification", path={"id": accepted["id"]}, query={"limit": "1"}, key=read
        )
        if notification["counts"]["delivered"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert notification["counts"]["delivered"] == 2, notification
    assert len(notification["deliveries"]) == 1 and notification["next"]
    status, rest, _ = client.call(
        "get_notification",
        path={"id": accepted["id"]},
        query={"after": notification["next"]},
        key=read,
    )
    assert [d["recipient"] for d in notification["deliveries"] + rest["deliveries"]] == [
        "u-1",
        "u-2",
    ]

    status, inbox, _ = client.call("get_inbox", path={"id": "u-1"}, query={"limit": "5"}, key=read)
    assert status == 200 and inbox["unread"] == 1
    message = inbox["items"][0]
    assert message["title"] == "Order 1001 is on its way"
    status, event, _ = client.call(
        "post_event", path={"id": message["delivery_id"]}, body={"type": "read"}, key=send
    )
    assert status == 200 and event["id"] == message["delivery_id"]
    status, rated, _ = client.call(
        "post_feedback",
        path={"id": message["delivery_id"]},
        body={"rating": "up", "comment": "quick"},
        key=send,
    )
    assert status == 200 and rated["rating"] == "up"
    status, receipts, _ = client.call(
        "get_recipient_deliveries", path={"id": "u-1"}, query={"limit": "1"}, key=read
    )
    assert status == 200 and receipts["items"][0]["id"] == message["delivery_id"]
    status, missing, _ = client.call("get_notification", path={"id": "999999"}, key=read)
    assert status == 404 and missing["error"]["field"] == "id"

    status, prefs, _ = client.call(
        "put_preferences",
        path={"id": "u-1"},
        body={"quiet_hours": {"enabled": True, "start": "22:00", "end": "08:00"}},
    )
    assert status == 200 and prefs["quiet_hours"]["start"] == "22:00"
    assert client.call("get_preferences", path={"id": "u-1"}, key=read)[1] == prefs

    status, stats, _ = client.call(
        "get_stats",
        query={
            "by": "channel",
            "from": "2026-01-01T00:00:00+00:00",
            "to": "2099-01-01T00:00:00+00:00",
        },
        key=read,
    )
    assert status == 200 and stats["by"] == "channel"

    status, links, _ = client.call("mint_links", path={"id": "u-1"}, key=api_keys["links"])
    assert status == 200 and links["inbox"].startswith("http")
    assert client.call("revoke_links", path={"id": "u-1"})[1]["revoked"] is True

    assert client.call("get_recipient", path={"id": "u-2"}, key=read)[1]["locale"] == "en"
    assert client.call("delete_recipient", path={"id": "u-3"})[1] == {"id": "u-3", "erased": True}
    assert client.call("get_recipient", path={"id": "u-3"}, key=read)[0] == 404
    assert client.call("healthz")[0] == 200
    assert client.call("readyz")[0] == 200
    status, _, _ = client.call("list_categories", key="tk_nonsense")
    assert status == 401

    status, listed, _ = client.call("list_keys")
    read_id = next(k["id"] for k in listed["items"] if k["scopes"] == ["read"])
    assert client.call("revoke_key", path={"id": str(read_id)})[1]["revoked_at"]
    assert client.call("list_categories", key=read)[0] == 401


def test_the_readme_walkthrough_runs_from_the_document_alone(
    client: DocumentClient, api_keys: dict[str, str], pipeline: Processes
) -> None:
    """The README's "same API from the start", step by step, through the document client."""
    status, category, _ = client.call(
        "put_category",
        path={"key": "promo.weekend"},
        body={
            "name": "Weekend sale",
            "kind": "promotional",
            "priority": "normal",
            "channels": ["inapp", "email"],
            "templates": {
                "inapp": {
                    "en": {"title": "{{ data.item }} at half price", "body": "This weekend only"}
                },
                "email": {
                    "en": {"subject": "{{ data.item }} at half price", "text": "This weekend only."}
                },
            },
        },
    )
    assert status == 200 and category["global_cap"] is True
    status, recipient, _ = client.call(
        "put_recipient",
        path={"id": "u-1001"},
        body={"email": "ada@example.com", "locale": "en", "timezone": "Europe/London"},
    )
    assert (status, recipient["tier"]) == (200, "minnow")
    status, prefs, _ = client.call("get_preferences", path={"id": "u-1001"})
    assert status == 200 and prefs["quiet_hours"]["timezone"] == "Europe/London"
    status, prefs, _ = client.call(
        "put_preferences", path={"id": "u-1001"}, body={"quiet_hours": {"enabled": False}}
    )
    assert status == 200 and prefs["quiet_hours"]["enabled"] is False
    status, accepted, _ = client.call(
        "post_notification",
        headers={"Idempotency-Key": "weekend-u-1001"},
        body={"category": "promo.weekend", "to": ["u-1001"], "data": {"item": "Monthly card"}},
    )
    assert (status, accepted["status"], accepted["recipients"]) == (202, "accepted", 1)

    deadline = time.monotonic() + 30
    while True:  # inapp delivered, email sent
        status, notification, _ = client.call("get_notification", path={"id": accepted["id"]})
        states = {d["channel"]: d["status"] for d in notification["deliveries"]}
        if states == {"inapp": "delivered", "email": "sent"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert states == {"inapp": "delivered", "email": "sent"}, notification

    status, inbox, _ = client.call("get_inbox", path={"id": "u-1001"})
    assert (status, inbox["unread"]) == (200, 1)
    assert inbox["items"][0]["title"] == "Monthly card at half price"
    status, links, _ = client.call("mint_links", path={"id": "u-1001"})
    assert status == 200 and {"preferences", "inbox", "unsubscribe"} <= set(links)
    status, rated, _ = client.call(
        "post_feedback",
        path={"id": inbox["items"][0]["delivery_id"]},
        body={"rating": "down", "comment": "too many sales"},
    )
    assert (status, rated["rating"]) == (200, "down") and rated["cap_lowered_to"]
