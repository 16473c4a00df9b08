"""Every time the API takes is ISO 8601 text with an offset: a number, or text of digits,
is a 422 naming the field in the API's terms, never read as seconds since 1970 — in every
body, query and form of the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PROMO = {
    "name": "Flash sales",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Sale", "body": "today"}}},
}
LATER = "2030-01-01T00:00:00+00:00"
# (method, path, the request without the time, where the time goes, its name in errors)
TIMES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("POST", "/v1/notifications", {"category": "promo.sale", "to": ["u-1"]}, "send_at", "send_at"),
    (
        "POST",
        "/v1/notifications",
        {"category": "promo.sale", "to": ["u-1"], "send_at": "2029-01-01T00:00:00Z"},
        "expires_at",
        "expires_at",
    ),
    (
        "POST",
        "/v1/notifications",
        {"category": "promo.sale", "to": ["u-1"], "send_at": "best"},
        "latest_at",
        "latest_at",
    ),
    ("POST", "/v1/campaigns", {"category": "promo.sale", "to": ["u-1"]}, "event_at", "event_at"),
    ("PUT", "/v1/recipients/u-2", {}, "last_active_at", "last_active_at"),
    ("PUT", "/v1/recipients/u-1/preferences", {}, "paused_until", "paused_until"),
    ("GET", "/v1/notifications", {}, "created_after", "created_after"),
    ("GET", "/v1/stats", {"by": "category"}, "from", "from"),
]
NOT_A_TIME = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=0, max_value=2**40).map(str),
    st.floats(min_value=0, max_value=2e9, allow_nan=False).map(lambda f: f"{f:.3f}"),
)


@pytest.fixture
def ready(admin: httpx.Client) -> httpx.Client:
    admin.put("/v1/categories/promo.sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    return admin


@pytest.mark.parametrize(("method", "path", "base", "key", "field"), TIMES)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=NOT_A_TIME)
def test_a_number_is_not_a_time(
    ready: httpx.Client,
    method: str,
    path: str,
    base: dict[str, Any],
    key: str,
    field: str,
    value: int | str,
) -> None:
    if method == "GET":
        answer = ready.get(path, params={**base, key: str(value)})
    else:
        answer = ready.request(method, path, json={**base, key: value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field, answer.text


@pytest.mark.parametrize(("method", "path", "base", "key", "field"), TIMES)
def test_an_iso_time_is_taken(
    ready: httpx.Client, method: str, path: str, base: dict[str, Any], key: str, field: str
) -> None:
    if method == "GET":
        answer = ready.get(path, params={**base, key: "2026-01-01T00:00:00Z"})
    else:
        answer = ready.request(method, path, json={**base, key: LATER})
    assert answer.status_code < 300, answer.text
