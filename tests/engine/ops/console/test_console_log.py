"""The console's message log over HTTP: newest first, filters in the API's terms, and a
cancel that needs the session's CSRF token."""

from __future__ import annotations

import re

import httpx

from tests.engine.acceptance.test_pipeline import ORDER
from tests.engine.conftest import recipient, send
from tests.engine.ops.console.conftest import csrf_token

ROW = re.compile(r'<a href="/console/messages/(\d+)\?lang=en">')


def _log_ids(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return ROW.findall(page.text[page.text.index('id="log"') :])


def test_the_log_lists_newest_first_and_filters_like_the_api(
    console: httpx.Client, admin: httpx.Client
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    admin.put("/v1/categories/order.shipped", json=ORDER).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com")
    data = {"card": "Monthly card", "order_id": "1"}
    first = send(admin, category="order.delivered", to=["u-1"], data=data)
    second = send(admin, category="order.shipped", to=["u-1"], data=data)
    third = send(admin, category="order.delivered", to=["u-1"], data=data)
    assert _log_ids(console.get("/console/messages")) == [third, second, first]
    only = console.get("/console/messages", params={"category": "order.delivered"})
    assert _log_ids(only) == [third, first]
    page = console.get("/console/messages").text
    assert "1 listed" in page and "order.shipped" in page
    api = admin.get("/v1/notifications", params={"status": "accepted"}).json()["items"]
    mine = _log_ids(console.get("/console/messages", params={"status": "accepted"}))
    assert mine == [n["id"] for n in api]
    assert _log_ids(console.get("/console/messages", params={"status": "done"})) == []
    today = console.get("/console/messages", params={"created_before": "2000-01-01"})
    assert _log_ids(today) == []

    for params, field in (
        ({"status": "lost"}, "status"),
        ({"category": "not a key"}, "category"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"before": "x"}, "before"),
    ):
        bad = console.get("/console/messages", params=params)
        assert bad.status_code == 422, params
        assert f"Field “{field}”" in bad.text, params


def test_cancel_from_the_notifications_page(console: httpx.Client, admin: httpx.Client) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com")
    nid = send(admin, category="order.delivered", to=["u-1"], data={"card": "c", "order_id": "1"})
    page = console.get(f"/console/messages/{nid}")
    assert "Cancel this notification" in page.text
    refused = console.post(f"/console/messages/{nid}/cancel", data={})
    assert refused.status_code == 403
    assert admin.get(f"/v1/notifications/{nid}").json()["status"] != "cancelled"
    token = csrf_token(page.text)
    done = console.post(f"/console/messages/{nid}/cancel", data={"csrf_token": token})
    assert done.status_code == 303
    assert admin.get(f"/v1/notifications/{nid}").json()["status"] == "cancelled"
    shown = console.get(done.headers["Location"])
    assert "Cancelled." in shown.text and "Cancel this notification" not in shown.text
    again = console.post(f"/console/messages/{nid}/cancel", data={"csrf_token": token})
    assert again.status_code == 303  # cancelling twice changes nothing
    missing = console.post("/console/messages/999999/cancel", data={"csrf_token": token})
    assert missing.status_code == 404 and "Field “id”" in missing.text
