"""`/v1/campaigns` over real HTTP: steps on the "3-2-1" rhythm, refusals naming the field,
the list, and cancelling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest


@pytest.fixture
def flash(admin: httpx.Client) -> httpx.Client:
    admin.put(
        "/v1/categories/promo.flash",
        json={
            "name": "Flash sales",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp", "email"],
            "templates": {"inapp": {"en": {"title": "Sale: {{ data.card }}", "body": "soon"}}},
        },
    ).raise_for_status()
    for rid in ("u-1", "u-2"):
        admin.put(f"/v1/recipients/{rid}", json={"email": f"{rid}@example.com"}).raise_for_status()
    return admin


def post(client: httpx.Client, **body: Any) -> httpx.Response:
    spec = {"category": "promo.flash", "to": ["u-1"], "data": {"card": "Genshin"}, **body}
    return client.post("/v1/campaigns", json=spec)


def test_the_default_rhythm_is_three_two_one(flash: httpx.Client) -> None:
    event = datetime.now(UTC).replace(microsecond=0) + timedelta(days=4)
    response = post(flash, event_at=event.isoformat(), data={"card": "Genshin"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "scheduled" and body["recipients"] == 1
    assert [s["offset"] for s in body["steps"]] == ["-3d", "-2d", "-1h"]
    assert [datetime.fromisoformat(s["at"]) for s in body["steps"]] == [
        event - timedelta(days=3),
        event - timedelta(days=2),
        event - timedelta(hours=1),
    ]
    for step in body["steps"]:
        notification = flash.get(f"/v1/notifications/{step['notification_id']}").json()
        assert datetime.fromisoformat(notification["send_at"]) == datetime.fromisoformat(step["at"])
        assert datetime.fromisoformat(notification["expires_at"]) == event
    assert flash.get(f"/v1/campaigns/{body['id']}").json()["funnel"] == {
        "sent": 0,
        "opened": 0,
        "clicked": 0,
        "converted": 0,
        "stopped": 0,
    }


def test_steps_already_past_are_skipped(flash: httpx.Client) -> None:
    event = datetime.now(UTC) + timedelta(hours=2)
    response = post(flash, event_at=event.isoformat())
    assert response.status_code == 202, response.text
    body = response.json()
    assert [(s["offset"], s["status"]) for s in body["steps"]] == [
        ("-3d", "skipped"),
        ("-2d", "skipped"),
        ("-1h", "scheduled"),
    ]
    assert body["steps"][0]["notification_id"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_at": "2020-01-01T00:00:00+00:00"}, "event_at"),
        ({"event_at": "next friday"}, "event_at"),
        ({"event_at": "2030-01-01T00:00:00"}, "event_at"),  # no offset
        ({"steps": ["-5d"], "event_at": "IN_1H"}, "steps"),
        ({"steps": ["1h"]}, "steps.0"),
        ({"steps": ["-1h", "+2h"]}, "steps.1"),
        ({"steps": [0]}, "steps.0"),
        ({"steps": ["-1h", "-1h"]}, "steps"),
        ({"steps": []}, "steps"),
        ({"steps": [True]}, "steps.0"),
        ({"category": "nope"}, "category"),
        ({"to": ["u-1", "ghost"]}, "to"),
        ({"channels": ["sms"]}, "channels.0"),
        ({"data": {"card": "x"}, "surprise": 1}, "surprise"),
    ],
)
def test_bad_campaigns_are_refused_naming_the_field(
    flash: httpx.Client, change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"event_at": (datetime.now(UTC) + timedelta(days=4)).isoformat()}
    body.update(change)
    if body["event_at"] == "IN_1H":
        body["event_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = post(flash, **body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_unparseable_body_is_a_400(flash: httpx.Client) -> None:
    response = flash.post(
        "/v1/campaigns", content=b'{"category": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_a_campaign_reaches_the_followers_of_a_topic(flash: httpx.Client) -> None:
    flash.put("/v1/recipients/u-2/follows/card.genshin").raise_for_status()
    event = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = post(flash, to={"topic": "card.genshin"}, event_at=event)
    assert response.status_code == 202, response.text
    assert response.json()["recipients"] == 1


def test_list_newest_first_and_paged(flash: httpx.Client) -> None:
    event = (datetime.now(UTC) + timedelta(days=4)).isoformat()
    ids = [post(flash, event_at=event).json()["id"] for _ in range(3)]
    page = flash.get("/v1/campaigns", params={"limit": 2}).json()
    assert [c["id"] for c in page["items"]] == [ids[2], ids[1]]
    rest = flash.get("/v1/campaigns", params={"limit": 2, "before": page["next"]}).json()
    assert [c["id"] for c in rest["items"]] == [ids[0]] and rest["next"] is None
    assert "funnel" not in page["items"][0]


def test_cancel_stops_every_step_and_twice_is_the_same(flash: httpx.Client) -> None:
    event = (datetime.now(UTC) + timedelta(days=4)).isoformat()
    created = post(flash, event_at=event).json()
    first = flash.post(f"/v1/campaigns/{created['id']}/cancel")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled" and first.json()["cancelled_at"]
    assert {s["status"] for s in first.json()["steps"]} == {"cancelled"}
    again = flash.post(f"/v1/campaigns/{created['id']}/cancel")
    assert again.status_code == 200 and again.json()["cancelled_at"] == first.json()["cancelled_at"]
    for step in created["steps"]:
        assert flash.get(f"/v1/notifications/{step['notification_id']}").json()["status"] == (
            "cancelled"
        )


def test_unknown_campaign_is_a_404(flash: httpx.Client) -> None:
    assert flash.get("/v1/campaigns/999").status_code == 404
    assert flash.post("/v1/campaigns/999/cancel").status_code == 404
    assert flash.get("/v1/campaigns/abc").status_code == 404


def test_a_read_key_cannot_create_a_campaign(flash: httpx.Client, api_keys: dict[str, str]) -> None:
    response = flash.post(
        "/v1/campaigns",
        json={
            "category": "promo.flash",
            "to": ["u-1"],
            "event_at": "2030-01-01T00:00:00Z",
            "data": {"card": "Genshin"},
        },
        headers={"Authorization": f"Bearer {api_keys['read']}"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_a_retry_with_the_same_idempotency_key_answers_the_first_campaign(
    flash: httpx.Client,
) -> None:
    event = (datetime.now(UTC) + timedelta(days=4)).isoformat()
    spec = {"category": "promo.flash", "to": ["u-1"], "data": {"card": "Genshin"}}
    body = {**spec, "event_at": event}
    key = {"Idempotency-Key": "sale-1212"}
    first = flash.post("/v1/campaigns", json=body, headers=key)
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = flash.post("/v1/campaigns", json=body, headers=key)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["steps"] == first.json()["steps"]
    # The key as a field is the same key.
    field = flash.post("/v1/campaigns", json={**body, "idempotency_key": "sale-1212"})
    assert field.status_code == 202 and field.json()["id"] == first.json()["id"]
    # Concurrent retries still make one campaign.
    with ThreadPoolExecutor(6) as pool:
        racing = list(
            pool.map(
                lambda _: flash.post("/v1/campaigns", json=body, headers={"Idempotency-Key": "k2"}),
                range(6),
            )
        )
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["id"] for r in racing}) == 1
    listed = flash.get("/v1/campaigns").json()["items"]
    assert len(listed) == 2
    notifications = flash.get("/v1/notifications").json()["items"]
    assert len(notifications) == 2 * 3  # two campaigns of three steps each, no more

    # The same key for another request, or a header and field that differ, is refused.
    other = flash.post("/v1/campaigns", json={**body, "data": {"card": "Zelda"}}, headers=key)
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_mismatch"
    assert other.json()["error"]["field"] == "idempotency_key"
    differ = flash.post("/v1/campaigns", json={**body, "idempotency_key": "x"}, headers=key)
    assert differ.status_code == 422 and differ.json()["error"]["field"] == "idempotency_key"
    assert len(flash.get("/v1/campaigns").json()["items"]) == 2
