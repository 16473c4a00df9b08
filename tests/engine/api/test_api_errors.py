"""Hostile input over real HTTP: every answer is a 4xx in the API's own terms, never a 500.

Each case is something a caller with a `send` or `read` key can type; the answer must be
the JSON error document naming the field as the API names it.
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine.schemas.catalog import CategoryIn
from tests.support import Server

# Not transactional: the process-wide accepted-notifications counter for the critical
# queue stays for the tests that read it.
ORDERS = {
    "name": "Orders",
    "kind": "service",
    "priority": "normal",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Order {{ data.order }}"}}},
}
INTERNALS = ("function-", "functools", "<", "[", "tagged-union", "Audience", "0x")


def nested(depth: int) -> str:
    return '{"a":' * depth + "{}" + "}" * depth


@pytest.fixture
def api(server: Server, admin: httpx.Client, api_keys: dict[str, str]) -> dict[str, Any]:
    """A category, a recipient with one inbox message, and clients per scope."""
    admin.put("/v1/categories/orders", json=ORDERS).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    clients = {
        scope: httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        for scope, key in api_keys.items()
    }
    links = clients["links"].post("/v1/recipients/u-1/links").json()
    inbox_path = httpx.URL(links["inbox"]).path
    return {"admin": admin, **clients, "inbox": inbox_path, "url": server.url}


def error(response: httpx.Response) -> dict[str, Any]:
    """The error document of a refusal, checked for its shape."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "field"}, body
    assert not any(part in str(body["field"]) for part in INTERNALS), body
    return body


DATA = '{"category": "orders", "to": ["u-1"], "data": %s}'
TEMPLATE = json.dumps({**ORDERS, "templates": {"inapp": {"en": {"title": "%s"}}}})
TITLE = "templates.inapp.en.title"
PARENS = "{{" + "(" * 900 + "1" + ")" * 900 + "}}"
IFS = "{% if 1 %}" * 3000 + "{% endif %}" * 3000
FEEDBACK = '{"rating": "up", "comment": "\\ud800"}'
DELIVERIES = "/v1/recipients/u-1/deliveries"

# (scope, method, path, raw body or None, status, field)
HOSTILE: list[tuple[str, str, str, str | None, int, str]] = [
    ("read", "GET", "/v1/notifications/²", None, 404, "id"),
    ("read", "GET", "/v1/notifications/١٢", None, 404, "id"),
    ("read", "GET", "/v1/notifications/9999999999999999999", None, 404, "id"),
    ("send", "POST", "/v1/deliveries/²/events", '{"type": "read"}', 404, "id"),
    ("send", "POST", "/v1/deliveries/²/feedback", '{"rating": "up"}', 404, "id"),
    ("read", "GET", "/v1/recipients/u-1/inbox?limit=²", None, 422, "limit"),
    ("read", "GET", "/v1/recipients/u-1/inbox?limit=+5", None, 422, "limit"),
    ("read", "GET", "/v1/recipients/u-1/inbox?before=²", None, 422, "before"),
    ("read", "GET", DELIVERIES + "?before=9999999999999999999", None, 422, "before"),
    ("read", "GET", "/v1/notifications/1?after=9999999999999999999", None, 422, "after"),
    ("read", "GET", "/v1/notifications/1?after=1%0A", None, 422, "after"),
    ("send", "POST", "/v1/notifications", DATA % nested(300), 422, "data"),
    ("send", "POST", "/v1/notifications", DATA % nested(40), 422, "data"),
    ("send", "POST", "/v1/notifications", DATA % nested(3000), 422, "body"),
    ("send", "POST", "/v1/notifications", DATA % f'{{"n": {2**64}}}', 422, "data.n"),
    ("send", "POST", "/v1/notifications", DATA % f'{{"n": [{-(2**70)}]}}', 422, "data.n.0"),
    ("send", "POST", "/v1/notifications", DATA % '{"n": 1e400}', 422, "data.n"),
    ("send", "POST", "/v1/notifications", DATA % '{"s": "\\ud800"}', 422, "data.s"),
    ("send", "POST", "/v1/notifications", DATA % '{"\\udfff": 1}', 422, "data.\udfff"),
    ("send", "POST", "/v1/notifications", DATA % '{"n": NaN}', 400, "body"),
    ("send", "POST", "/v1/deliveries/1/feedback", FEEDBACK, 422, "comment"),
    ("admin", "PUT", "/v1/recipients/u-2", '{"tags": ["\\udbff"]}', 422, "tags.0"),
    ("admin", "PUT", "/v1/categories/t", TEMPLATE.replace("%s", PARENS), 422, TITLE),
    ("admin", "PUT", "/v1/categories/t", TEMPLATE.replace("%s", IFS), 422, TITLE),
    # 400 KB: past the tests' 64 KB body limit (production's 1 MB meets the 200,000-character cap)
    ("admin", "PUT", "/v1/categories/t", TEMPLATE.replace("%s", "{{" * 200_000), 413, "body"),
    ("admin", "PUT", "/v1/categories/t", TEMPLATE.replace("%s", "{{" * 20_000), 422, TITLE),
    ("admin", "PUT", "/v1/categories/t", TEMPLATE.replace("%s", "{{" * 30_000), 422, TITLE),
]  # fmt: skip


@pytest.mark.parametrize(("scope", "method", "path", "body", "status", "field"), HOSTILE)
def test_hostile_input_is_a_4xx_naming_the_field(
    api: dict[str, Any],
    scope: str,
    method: str,
    path: str,
    body: str | None,
    status: int,
    field: str,
) -> None:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    content = body.encode("utf-8", "surrogatepass") if body is not None else None
    answer = api[scope].request(method, path, content=content, headers=headers)
    got = error(answer)
    assert (answer.status_code, got["field"]) == (status, field), got


@pytest.mark.parametrize(
    "suffix", ["?before=²", "?before=9999999999999999999", "/²/go", "/99999999999999999999/go"]
)
def test_inbox_page_refuses_odd_ids_without_a_500(api: dict[str, Any], suffix: str) -> None:
    answer = httpx.get(api["url"] + api["inbox"] + suffix, follow_redirects=False)
    assert answer.status_code < 500, answer.text[:300]


def test_errors_name_fields_as_the_api_does(api: dict[str, Any]) -> None:
    send = api["send"]
    to_text = error(send.post("/v1/notifications", json={"category": "orders", "to": "u-1"}))
    assert to_text["field"] == "to"
    assert "list of recipient ids" in to_text["message"] and '"all"' in to_text["message"]

    tier = error(
        send.post(
            "/v1/notifications", json={"category": "orders", "to": {"segment": {"tier": "whale"}}}
        )
    )
    assert tier["field"] == "to.segment.tier"
    assert all(name in tier["message"] for name in ("whale", "dolphin", "minnow")), tier

    kraken = error(
        send.post(
            "/v1/notifications",
            json={"category": "orders", "to": {"segment": {"tier": ["kraken"]}}},
        )
    )
    assert kraken["field"] == "to.segment.tier.0" and "'minnow'" in kraken["message"]

    typo = error(
        send.post("/v1/notifications", json={"category": "orders", "to": ["u-1"], "dta": {}})
    )
    assert (
        typo["field"] == "dta" and "data" in typo["message"] and "collapse_key" in typo["message"]
    )

    batch = error(
        send.post(
            "/v1/notifications/batch", json={"notifications": [{"category": "orders", "to": 5}]}
        )
    )
    assert batch["field"] == "notifications.0.to"
    late = {"send_at": "2026-12-01T10:00:00+00:00", "expires_at": "2026-12-01T09:00:00+00:00"}
    batch = error(
        send.post(
            "/v1/notifications/batch",
            json={
                "notifications": [
                    {"category": "orders", "to": ["u-1"]},
                    {"category": "orders", "to": ["u-1"], **late},
                ]
            },
        )
    )
    assert batch["field"] == "notifications.1.expires_at"
    empty = error(
        send.post(
            "/v1/notifications/batch",
            json={"notifications": [{"category": "orders", "to": {"segment": {}}}]},
        )
    )
    assert empty["field"] == "notifications.0.to.segment"
    bulk = error(
        api["admin"].post(
            "/v1/recipients/bulk", json={"recipients": [{"id": "a"}, {"id": "b", "email": "x"}]}
        )
    )
    assert bulk["field"] == "recipients.1.email"


def test_unparseable_json_is_400_invalid_json(api: dict[str, Any]) -> None:
    for raw in (b"{bad", b"", b'{"category": "orders"', b"\xff\xfe{", b'{"to": Infinity}'):
        got = error(
            api["send"].post(
                "/v1/notifications", content=raw, headers={"Content-Type": "application/json"}
            )
        )
        assert got["code"] == "invalid_json" and got["field"] == "body", (raw, got)
    assert api["send"].post("/v1/notifications", content=b"{bad").status_code == 400


def test_a_body_its_content_encoding_does_not_decode_is_a_400(api: dict[str, Any]) -> None:
    # The server drops the connection after such a body: one connection per request.
    auth = api["admin"].headers["Authorization"]
    for path, method in (("/v1/notifications", "POST"), ("/v1/recipients/u-3", "PUT")):
        got = httpx.request(
            method,
            api["url"] + path,
            content=b'{"category": "orders", "to": ["u-1"]}',
            headers={
                "Authorization": auth,
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            },
        )
        assert got.status_code == 400, got.text
        assert error(got)["field"] == "Content-Encoding"
        # In our words, not the HTTP library's ("Can not decode content-encoding: gzip").
        assert error(got)["message"] == (
            "the body does not decode as its Content-Encoding ('gzip') says"
        ), got.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/recipients/u-1/preferences", {"unsubscribed": "yes"}, "unsubscribed"),
        ("/v1/recipients/u-1/preferences", {"unsubscribed": 1}, "unsubscribed"),
        ("/v1/recipients/u-1/preferences", {"channels": {"email": "no"}}, "channels.email"),
        (
            "/v1/recipients/u-1/preferences",
            {"caps": [{"count": True, "per": "1d"}]},
            "caps.0.count",
        ),
        ("/v1/recipients/u-1/preferences", {"caps": [{"count": "3", "per": "1d"}]}, "caps.0.count"),
        (
            "/v1/recipients/u-1/preferences",
            {"quiet_hours": {"enabled": "on"}},
            "quiet_hours.enabled",
        ),
        ("/v1/recipients/u-1", {"annual_spend": "6000"}, "annual_spend"),
        ("/v1/recipients/u-1", {"annual_spend": True}, "annual_spend"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_converted(
    api: dict[str, Any], path: str, body: dict[str, Any], field: str
) -> None:
    """A string or number where a boolean or count belongs would read back as something the
    caller never wrote ("yes" as true, true as 1): refused, naming the field."""
    got = api["admin"].put(path, json=body)
    assert got.status_code == 422 and error(got)["field"] == field, got.text


def test_the_bearer_scheme_is_case_insensitive(api: dict[str, Any]) -> None:
    key = api["read"].headers["Authorization"].split(" ", 1)[1]
    for scheme in ("bearer", "BEARER", "Bearer"):
        got = httpx.get(api["url"] + "/v1/categories", headers={"Authorization": f"{scheme} {key}"})
        assert got.status_code == 200, (scheme, got.text)
    basic = httpx.get(api["url"] + "/v1/categories", headers={"Authorization": f"Basic {key}"})
    assert basic.status_code == 401 and error(basic)["field"] == "Authorization"


def test_every_layer_answers_with_the_error_document(api: dict[str, Any]) -> None:
    send = api["send"]
    trace = send.request("TRACE", "/v1/notifications")
    assert trace.status_code == 405 and error(trace)["code"] == "method_not_allowed"
    assert set(trace.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}
    delete = send.delete("/v1/categories")
    assert delete.status_code == 405 and set(delete.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    error(delete)

    for path in ("/v1/nothing-here", "/nothing-here", "/v1/notifications/1/deliveries"):
        missing = send.get(path)
        assert missing.status_code == 404 and error(missing)["code"] == "not_found"

    long_key = send.post(
        "/v1/notifications",
        json={"category": "orders", "to": ["u-1"]},
        headers={"Idempotency-Key": "k" * 10_000},
    )
    assert long_key.status_code == 422 and error(long_key)["field"] == "Idempotency-Key"

    big = api["admin"].put(
        "/v1/recipients/u-2",
        content=b'{"tags": ["' + b"x" * 200_000 + b'"]}',
        headers={"Content-Type": "application/json"},
    )
    assert big.status_code == 413 and error(big)["code"] == "too_large"

    anonymous = httpx.get(api["url"] + "/v1/categories")
    assert anonymous.status_code == 401 and error(anonymous)["field"] == "Authorization"


def test_a_header_past_the_parser_limit_is_refused_cleanly(api: dict[str, Any]) -> None:
    """A header longer than 64 KB never reaches the API: the HTTP parser refuses it with a
    400 and closes; the server keeps serving."""
    url = httpx.URL(api["url"])
    with socket.create_connection((url.host, url.port), timeout=10) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n")
        assert raw.recv(100).split(b" ")[1] == b"400"
    assert httpx.get(api["url"] + "/healthz").status_code == 200


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ("category", "to", "data", "content", "channels", "send_at", "expires_at", "collapse_key")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5), odd_id=st.text(max_size=25))
def test_any_notification_body_or_id_is_answered_without_a_500(
    api: dict[str, Any], body: dict[str, Any], odd_id: str
) -> None:
    raw = json.dumps({"category": "orders", "to": ["u-1"], **body}).encode("utf-8", "surrogatepass")
    answer = api["send"].post(
        "/v1/notifications", content=raw, headers={"Content-Type": "application/json"}
    )
    if answer.status_code != 202:
        error(answer)
    answer = api["read"].get("/v1/notifications/" + quote(odd_id, safe=""))
    if answer.status_code != 200:
        error(answer)
    for name in ("before", "limit"):
        answer = api["read"].get("/v1/recipients/u-1/inbox", params={name: odd_id})
        if answer.status_code != 200:
            error(answer)


def test_template_sources_are_bounded_before_parsing() -> None:
    """200,000 `{{` never reaches the template parser: the source is over its cap."""
    spec = {**ORDERS, "templates": {"inapp": {"en": {"title": "{{" * 200_000}}}}
    with pytest.raises(ValidationError) as refused:
        CategoryIn.model_validate(spec)
    assert refused.value.errors()[0]["type"] == "string_too_long"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",  # what curl -d sends unless told
        "application/xml",
        "application/json; charset=latin-1",
    ],
)
def test_a_body_that_is_not_json_by_its_content_type_is_a_415(
    api: dict[str, Any], content_type: str
) -> None:
    got = api["send"].post(
        "/v1/notifications",
        content=b'{"category": "orders", "to": ["u-1"]}',
        headers={"Content-Type": content_type},
    )
    assert got.status_code == 415, got.text
    assert error(got)["code"] == "unsupported_media_type"
    assert error(got)["field"] == "Content-Type"


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json"])
def test_json_content_types_are_read(api: dict[str, Any], content_type: str) -> None:
    got = api["send"].post(
        "/v1/notifications",
        content=b'{"category": "orders", "to": ["u-1"], "data": {"order": "7"}}',
        headers={"Content-Type": f"{content_type}; charset=UTF-8"},
    )
    assert got.status_code == 202, got.text
