"""Campaigns on the "3-2-1" rhythm through the API, real worker and scheduler processes,
Redis, SQL and SMTP: time moves by giving near-future event times and short steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Mailbox


def campaign(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    response = admin.post("/v1/campaigns", json=body)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def in_seconds(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def step_view(admin: httpx.Client, created: dict[str, Any], number: int) -> dict[str, Any]:
    """Step `number` (0-based) once planned with nothing in flight."""
    nid = created["steps"][number]["notification_id"]
    return wait_for(lambda: settled(admin, nid), timeout=60)


def quiet_now(zone: str) -> dict[str, Any]:
    local = datetime.now(ZoneInfo(zone))
    return {
        "enabled": True,
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": zone,
    }


def test_steps_go_at_their_times_and_stop_after_a_click(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.flash", channels=["inapp", "email"])
    people = ("clicker", "plain", "leaver", "pauser", "capped")
    for rid in people:
        recipient(admin, rid, email=f"{rid}@example.com")
    admin.put(
        "/v1/recipients/capped/preferences",
        json={"categories": {"promo.flash": {"caps": [{"count": 1, "per": "1h"}]}}},
    ).raise_for_status()
    created = campaign(
        admin,
        category="promo.flash",
        to=list(people),
        event_at=in_seconds(80),
        steps=["-70s", "-30s"],
        data={"t": "Flash sale"},
    )
    assert [s["status"] for s in created["steps"]] == ["scheduled", "scheduled"]

    first = step_view(admin, created, 0)
    for rid in people:
        assert channels_of(first, rid)["email"]["status"] == "sent", rid
    assert sorted(str(m["To"]) for m in smtp.messages) == sorted(f"{r}@example.com" for r in people)
    clicked = admin.post(
        f"/v1/deliveries/{channels_of(first, 'clicker')['email']['id']}/events",
        json={"type": "clicked"},
    )
    assert clicked.status_code == 200
    admin.put("/v1/recipients/leaver/preferences", json={"unsubscribed": True}).raise_for_status()
    paused = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    admin.put("/v1/recipients/pauser/preferences", json={"paused_until": paused}).raise_for_status()

    second = step_view(admin, created, 1)
    fate = {rid: channels_of(second, rid) for rid in people}
    assert {c: (d["status"], d["reason"]) for c, d in fate["clicker"].items()} == {
        "inapp": ("suppressed", "clicked_earlier"),
        "email": ("suppressed", "clicked_earlier"),
    }
    assert fate["plain"]["email"]["status"] == "sent"
    assert (fate["leaver"]["email"]["status"], fate["leaver"]["email"]["reason"]) == (
        "suppressed",
        "unsubscribed",
    )
    assert (fate["pauser"]["email"]["status"], fate["pauser"]["email"]["reason"]) == (
        "suppressed",
        "paused",
    )
    assert fate["pauser"]["inapp"]["status"] == "delivered"  # a pause does not hide the inbox
    assert (fate["capped"]["email"]["status"], fate["capped"]["email"]["reason"]) == (
        "suppressed",
        "capped",
    )
    second_mail = [str(m["To"]) for m in smtp.messages][len(people) :]
    assert second_mail == ["plain@example.com"]

    view = admin.get(f"/v1/campaigns/{created['id']}").json()
    assert view["status"] == "done"
    assert view["funnel"] == {"sent": 5, "opened": 1, "clicked": 1, "converted": 0, "stopped": 1}
    assert view["steps"][1]["counts"]["sent"] == 1
    assert view["steps"][1]["funnel"]["stopped"] == 1


def test_a_step_quiet_hours_would_push_past_the_event_expires_instead(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.flash", channels=["inapp", "email"])
    recipient(admin, "night", email="night@example.com", timezone="Asia/Shanghai", quiet=True)
    admin.put(
        "/v1/recipients/night/preferences", json={"quiet_hours": quiet_now("Asia/Shanghai")}
    ).raise_for_status()
    created = campaign(
        admin, category="promo.flash", to=["night"], event_at=in_seconds(40), steps=["-30s"]
    )
    step = channels_of(step_view(admin, created, 0), "night")
    assert (step["email"]["status"], step["email"]["reason"]) == ("suppressed", "expired")
    assert step["inapp"]["status"] == "delivered"  # the inbox is not an interruption
    assert smtp.messages == []


def test_a_later_step_replaces_an_earlier_one_still_waiting(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.flash", channels=["inapp", "email"])
    recipient(admin, "owl", email="owl@example.com", timezone="Asia/Shanghai", quiet=True)
    admin.put(
        "/v1/recipients/owl/preferences", json={"quiet_hours": quiet_now("Asia/Shanghai")}
    ).raise_for_status()
    # The event is after the quiet hours end (two hours from now): the steps wait for it.
    event = datetime.now(UTC) + timedelta(hours=3)
    ahead = int((event - datetime.now(UTC)).total_seconds())
    created = campaign(
        admin,
        category="promo.flash",
        to=["owl"],
        event_at=event.isoformat(),
        steps=[-(ahead - 8), -(ahead - 25)],
    )
    step_view(admin, created, 0)
    second = channels_of(step_view(admin, created, 1), "owl")["email"]
    assert (second["status"], second["reason"]) == ("scheduled", "quiet_hours")
    replaced_view = channels_of(step_view(admin, created, 0), "owl")["email"]
    assert (replaced_view["status"], replaced_view["reason"]) == ("suppressed", "collapsed")
    assert smtp.messages == []


def test_a_cancelled_campaign_sends_no_further_step(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.flash", channels=["inapp", "email"])
    recipient(admin, "u-1", email="u1@example.com")
    # Mid-campaign: the first step went, the next one (an hour away) never will.
    event = datetime.now(UTC) + timedelta(hours=2)
    ahead = int((event - datetime.now(UTC)).total_seconds())
    running = campaign(
        admin,
        category="promo.flash",
        to=["u-1"],
        event_at=event.isoformat(),
        steps=[-(ahead - 8), "-1h"],
    )
    step_view(admin, running, 0)
    cancelled = admin.post(f"/v1/campaigns/{running['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert [s["status"] for s in cancelled.json()["steps"]] == ["done", "cancelled"]
    # Cancelled before its steps: their times pass and nothing is planned.
    early = campaign(
        admin, category="promo.flash", to=["u-1"], event_at=in_seconds(30), steps=["-25s", "-20s"]
    )
    assert admin.post(f"/v1/campaigns/{early['id']}/cancel").status_code == 200
    # A notification due after both steps shows the scheduler has passed their times.
    later = send(admin, category="promo.flash", to=["u-1"], send_at=in_seconds(15))
    wait_for(lambda: settled(admin, later), timeout=60)
    for step in (*early["steps"], running["steps"][1]):
        view = admin.get(f"/v1/notifications/{step['notification_id']}").json()
        assert view["status"] == "cancelled" and view["deliveries"] == []
    assert len(smtp.messages) == 2  # the first step of the first campaign, and the notification
