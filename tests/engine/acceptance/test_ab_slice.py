"""An A/B test slice through the API, real worker and scheduler processes, Redis, SQL and
SMTP, on SQLite and PostgreSQL: the slice gets the variants, the rest waits and then gets
the variant its clicks made the winner, still under its preferences at that time; a
cancel before the decision stops the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from engine.pipeline.variants import assign, in_slice
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, send, wait_for
from tests.support import Mailbox

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
VARIANTS = [
    {"name": "a", "content": {"title": "Sale A", "body": "plain"}},
    {"name": "b", "content": {"title": "Sale B", "body": "friendly"}},
]
PEOPLE = [f"u-{i:02d}" for i in range(30)]


def audience(admin: httpx.Client, smtp: Mailbox) -> None:
    """The recipients, and a worker that is up: the test's wait counts from the send."""
    admin.post(
        "/v1/recipients/bulk",
        json={"recipients": [{"id": r, "email": f"{r}@example.com"} for r in PEOPLE]},
    ).raise_for_status()
    for rid in PEOPLE:
        admin.put(
            f"/v1/recipients/{rid}/preferences", json={"quiet_hours": {"enabled": False}}
        ).raise_for_status()
    send(admin, category="promo.slice", to=PEOPLE[:1], content={"title": "warm-up"})
    wait_for(lambda: smtp.messages, timeout=30)
    smtp.reset()


def view_of(admin: httpx.Client, nid: str) -> dict[str, Any]:
    return dict(admin.get(f"/v1/notifications/{nid}", params={"limit": 1000}).json())


def planned(admin: httpx.Client, nid: str) -> dict[str, Any] | None:
    view = view_of(admin, nid)
    return view if view["status"] == "planned" and not view["counts"]["queued"] else None


def mail_to(smtp: Mailbox) -> dict[str, str]:
    return {str(m["To"]).split("@")[0]: str(m["Subject"]) for m in smtp.messages}


@BOTH
def test_clicks_in_the_slice_make_the_winner_and_the_rest_gets_its_copy(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.slice")
    audience(admin, smtp)
    test = {"slice": 0.5, "metric": "click_rate", "wait": "8s"}
    sent_at = datetime.now(UTC)
    nid = send(admin, category="promo.slice", to=PEOPLE, variants=VARIANTS, ab_test=test)
    tested = [r for r in PEOPLE if in_slice(f"notification:{nid}", r, 0.5)]
    rest = [r for r in PEOPLE if r not in tested]
    of = {r: "ab"[assign(f"notification:{nid}", r, [1, 1])] for r in tested}
    assert {"a", "b"} == set(of.values()) and len(rest) >= 3  # the hash split them so

    # The slice gets its variants on every channel; the rest waits, inbox and all.
    view = wait_for(lambda: planned(admin, nid), timeout=30)
    waiting = view["ab_test"]
    assert waiting["winner"] is None and waiting["slice"] == 0.5 and waiting["wait"] == 8
    decide_at = datetime.fromisoformat(waiting["decide_at"])
    assert sent_at + timedelta(seconds=7) < decide_at < sent_at + timedelta(seconds=10)
    for rid in tested:
        got = channels_of(view, rid)
        assert got["inapp"]["variant"] == got["email"]["variant"] == of[rid]
        assert got["inapp"]["status"] == "delivered"
    for rid in rest:
        for d in channels_of(view, rid).values():
            assert (d["status"], d["reason"], d["variant"]) == ("scheduled", "ab_test", None)
            assert datetime.fromisoformat(d["due_at"]) == decide_at
    wait_for(lambda: len(smtp.messages) == len(tested), timeout=30)
    assert mail_to(smtp) == {r: f"Sale {of[r].upper()}" for r in tested}

    # While the rest waits: b's readers click, one waiting reader unsubscribes and
    # another enters quiet hours.
    for rid in tested:
        if of[rid] == "b":
            inbox = channels_of(view, rid)["inapp"]["id"]
            admin.post(f"/v1/deliveries/{inbox}/events", json={"type": "clicked"})
    gone, quiet, told = rest[0], rest[1], rest[2:]
    admin.put(f"/v1/recipients/{gone}/preferences", json={"unsubscribed": True})
    hour = datetime.now(UTC)
    window = {
        "enabled": True,
        "start": (hour - timedelta(hours=1)).strftime("%H:%M"),
        "end": (hour + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    admin.put(f"/v1/recipients/{quiet}/preferences", json={"quiet_hours": window})

    def decided() -> dict[str, Any] | None:
        found = view_of(admin, nid)
        emails = [channels_of(found, r)["email"]["status"] for r in told]
        return found if found["ab_test"]["winner"] and set(emails) == {"sent"} else None

    view = wait_for(decided, timeout=40)
    result = view["ab_test"]
    assert (result["winner"], result["rule"]) == ("b", "best")
    clicked = sum(1 for r in tested if of[r] == "b")
    assert result["figures"]["b"]["clicked"] == clicked
    assert result["figures"]["a"]["click_rate"] == 0
    assert result["figures"]["b"]["click_rate"] > 0
    assert datetime.fromisoformat(result["decided_at"]) >= decide_at
    # The rest reads b's copy, in the mail and in the inbox.
    mailed = mail_to(smtp)
    assert {r: mailed[r] for r in told} == dict.fromkeys(told, "Sale B")
    for rid in told:
        got = channels_of(view, rid)
        assert got["email"]["variant"] == got["inapp"]["variant"] == "b"
        assert got["email"]["status"] == "sent"
    inbox = admin.get(f"/v1/recipients/{told[0]}/inbox").json()["items"]
    assert [i["title"] for i in inbox] == ["Sale B"]
    # Their preferences at the release, not at planning, decided the other two.
    assert gone not in mailed and quiet not in mailed
    assert {d["reason"] for d in channels_of(view, gone).values()} == {"unsubscribed"}
    held = channels_of(view, quiet)["email"]
    assert (held["status"], held["reason"]) == ("scheduled", "quiet_hours")

    stats = admin.get("/v1/stats", params={"by": "variant", "notification": nid}).json()
    assert stats["ab_test"]["winner"] == "b"
    assert stats["ab_test"]["figures"] == result["figures"]


@BOTH
def test_a_cancel_before_the_decision_stops_the_rest(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.slice")
    audience(admin, smtp)
    test = {"slice": 0.3, "metric": "open_rate", "wait": 6}
    nid = send(admin, category="promo.slice", to=PEOPLE, variants=VARIANTS, ab_test=test)
    tested = {r for r in PEOPLE if in_slice(f"notification:{nid}", r, 0.3)}
    assert 0 < len(tested) < len(PEOPLE)
    wait_for(lambda: planned(admin, nid), timeout=30)
    wait_for(lambda: len(smtp.messages) == len(tested), timeout=30)
    answer = admin.post(f"/v1/notifications/{nid}/cancel")
    assert answer.status_code == 200, answer.text

    # Well past the decision time, nothing more went out and the rest ended cancelled.
    decide_at = datetime.fromisoformat(view_of(admin, nid)["ab_test"]["decide_at"])
    wait_for(lambda: datetime.now(UTC) > decide_at + timedelta(seconds=3), timeout=10)
    view = view_of(admin, nid)
    assert set(mail_to(smtp)) == tested
    for rid in set(PEOPLE) - tested:
        for d in channels_of(view, rid).values():
            assert (d["status"], d["reason"]) == ("suppressed", "cancelled")
    assert view["ab_test"]["winner"] is None


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"ab_test": {"slice": 0.1, "metric": "click_rate", "wait": "1h"}}, "ab_test"),
        (
            {"variants": VARIANTS, "ab_test": {"slice": 1.0, "metric": "click_rate", "wait": 60}},
            "ab_test.slice",
        ),
        (
            {"variants": VARIANTS, "ab_test": {"slice": 0.1, "metric": "likes", "wait": 60}},
            "ab_test.metric",
        ),
        (
            {"variants": VARIANTS, "ab_test": {"slice": 0.1, "metric": "open_rate"}},
            "ab_test.wait",
        ),
        (
            {
                "variants": [VARIANTS[0], {**VARIANTS[1], "send_after": "2h"}],
                "ab_test": {"slice": 0.1, "metric": "open_rate", "wait": "1h"},
            },
            "variants.1.send_after",
        ),
        (
            {
                "variants": VARIANTS,
                "send_at": "9999-12-31T00:00:00Z",
                "ab_test": {"slice": 0.1, "metric": "open_rate", "wait": "2d"},
            },
            "ab_test.wait",
        ),
        (
            {
                "variants": VARIANTS,
                "send_at": "best",
                "ab_test": {"slice": 0.1, "metric": "open_rate", "wait": "1h"},
            },
            "ab_test",
        ),
    ],
)
def test_a_test_slice_that_cannot_work_is_refused(
    admin: httpx.Client, extra: dict[str, Any], field: str
) -> None:
    category(admin, "promo.slice")
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    answer = admin.post(
        "/v1/notifications", json={"category": "promo.slice", "to": ["u-1"], **extra}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
