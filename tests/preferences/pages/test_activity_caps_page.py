"""The preference page tells a recipient the platform's caps for readers like them: a
category's `caps_by_activity` for their activity (active, sleeping, churned) beside its
own caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from engine.settings import Settings
from tests.preferences.pages.test_pages_http import link, text
from tests.support import Server

WAKE_UP = {
    "name": "Come back",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["inapp", "email"],
    "caps": [{"count": 3, "per": "1w"}],
    "caps_by_activity": {"sleeping": [{"count": 1, "per": "30d"}]},
}


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_sleeping_reader_sees_the_cap_for_sleeping_readers_and_an_active_one_does_not(
    admin: httpx.Client, settings: Settings, server: Server
) -> None:
    admin.put("/v1/categories/promo.wake_up", json=WAKE_UP).raise_for_status()
    at = datetime.now(UTC)
    seen = {"sleeper": at - timedelta(days=12), "regular": at - timedelta(hours=2)}
    for rid, last in seen.items():
        body = {"email": f"{rid}@example.com", "last_active_at": last.isoformat()}
        admin.put(f"/v1/recipients/{rid}", json=body).raise_for_status()
    assert admin.get("/v1/recipients/sleeper").json()["activity"] == "sleeping"

    with httpx.Client(timeout=30) as client:
        sleeper = text(client.get(link(settings, server, "preferences", "sleeper")))
        regular = text(client.get(link(settings, server, "preferences", "regular")))
    assert "We never send more than 3 per week, 1 per 30 days." in sleeper
    assert "We never send more than 3 per week." in regular
    assert "30 days" not in regular
