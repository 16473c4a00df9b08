"""Preference writes at the same moment take turns: none fails, none is lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

CHANGES = [
    {"channels": {"email": False}},
    {"channels": {"sms": False}},
    {"channels": {"push": False}},
    {"quiet_hours": {"start": "21:00"}},
    {"digest": {"enabled": True}},
    {"caps": [{"count": 2, "per": "1d"}]},
]


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_preference_writes_all_land(admin: httpx.Client, attempt: int) -> None:
    rid = f"u-{attempt}"
    admin.put(f"/v1/recipients/{rid}", json={}).raise_for_status()
    start = threading.Barrier(len(CHANGES))

    def put(change: dict[str, object]) -> int:
        start.wait()
        return admin.put(f"/v1/recipients/{rid}/preferences", json=change).status_code

    with ThreadPoolExecutor(len(CHANGES)) as pool:
        assert list(pool.map(put, CHANGES)) == [200] * len(CHANGES)
    read = admin.get(f"/v1/recipients/{rid}/preferences").json()
    assert [read["channels"][ch] for ch in ("email", "sms", "push")] == [False] * 3
    assert read["quiet_hours"]["start"] == "21:00" and read["digest"]["enabled"] is True
    assert read["caps"] == [{"count": 2, "per": "1d"}]
