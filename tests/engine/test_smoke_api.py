"""The management API answers over real HTTP."""

from __future__ import annotations

import httpx


def test_category_recipient_preferences_round_trip(admin: httpx.Client) -> None:
    r = admin.put(
        "/v1/categories/promo.flash_sale",
        json={
            "name": "Flash sales",
            "kind": "promotional",
            "priority": "normal",
            "channels": ["push", "inapp", "email"],
            "caps": [{"count": 2, "per": "1h"}],
            "collapse_window": "1h",
            "escalate_after": "30m",
            "templates": {"inapp": {"en": {"title": "Flash sale: {{ data.card }}", "body": "hi"}}},
        },
    )
    assert r.status_code == 200, r.text
    r = admin.put(
        "/v1/recipients/u-1",
        json={"email": "a@example.com", "timezone": "Asia/Shanghai", "annual_spend": 6200},
    )
    assert r.status_code == 200, r.text
    assert r.json()["tier"] == "whale"
    r = admin.get("/v1/recipients/u-1/preferences")
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours"]["timezone"] == "Asia/Shanghai"
    r = admin.put("/v1/recipients/u-1/preferences", json={"quiet_hours": {"start": "25:00"}})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "quiet_hours.start"
