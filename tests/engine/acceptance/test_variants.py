"""A/B tests through the API, real worker and scheduler processes, Redis, SQL and SMTP:
each recipient gets the copy of their variant on every channel and every campaign step,
a send-time variant waits, and stats compare the variants."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx

from engine.pipeline.variants import assign
from tests.engine.acceptance.test_campaigns import campaign, in_seconds, step_view
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Mailbox

VARIANTS = [
    {"name": "a", "weight": 1, "content": {"title": "Sale A", "body": "plain"}},
    {"name": "b", "weight": 3, "content": {"title": "Sale B", "body": "friendly"}},
]


def test_each_recipient_reads_their_variant_and_stats_compare_them(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.ab", channels=["inapp", "email"])
    people = [f"u-{i:02d}" for i in range(24)]
    admin.post(
        "/v1/recipients/bulk",
        json={"recipients": [{"id": r, "email": f"{r}@example.com"} for r in people]},
    ).raise_for_status()
    for rid in people:
        admin.put(
            f"/v1/recipients/{rid}/preferences", json={"quiet_hours": {"enabled": False}}
        ).raise_for_status()
    nid = send(admin, category="promo.ab", to=people, variants=VARIANTS)
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    expected = {rid: "ab"[assign(f"notification:{nid}", rid, [1, 3])] for rid in people}
    assert set(expected.values()) == {"a", "b"}
    for rid in people:
        got = channels_of(view, rid)
        assert got["email"]["variant"] == got["inapp"]["variant"] == expected[rid]
    subjects = {str(m["To"]).split("@")[0]: str(m["Subject"]) for m in smtp.messages}
    assert subjects == {rid: f"Sale {expected[rid].upper()}" for rid in people}
    inbox = admin.get("/v1/recipients/u-00/inbox").json()["items"]
    assert [i["title"] for i in inbox] == [f"Sale {expected['u-00'].upper()}"]

    # Every recipient of variant b clicks the email; nobody of a does.
    for rid in people:
        if expected[rid] == "b":
            delivery = channels_of(view, rid)["email"]["id"]
            admin.post(f"/v1/deliveries/{delivery}/events", json={"type": "clicked"})
    stats = admin.get("/v1/stats", params={"by": "variant", "notification": nid}).json()
    rows = {r["variant"]: r for r in stats["items"]}
    share = Counter(expected.values())
    assert rows["a"]["sent"] == 2 * share["a"] and rows["b"]["sent"] == 2 * share["b"]
    assert rows["a"]["click_rate"] == 0 and rows["b"]["click_rate"] == 0.5
    low, high = rows["b"]["ci95"]["click_rate"]
    assert low < 0.5 < high
    assert stats["significant"]["click_rate"] is True
    assert stats["significant"]["conversion_rate"] is False


def test_a_send_time_variant_waits_and_a_campaign_keeps_one_variant_per_recipient(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    category(admin, "promo.ab", channels=["inapp", "email"])
    people = [f"r-{i}" for i in range(6)]
    for rid in people:
        recipient(admin, rid, email=f"{rid}@example.com")
    later = [
        {"name": "now", "content": {"title": "Now"}},
        {"name": "later", "content": {"title": "Later"}, "send_after": "2h"},
    ]
    nid = send(admin, category="promo.ab", to=people, variants=later)
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    for rid in people:
        email = channels_of(view, rid)["email"]
        if email["variant"] == "later":
            assert (email["status"], email["reason"]) == ("scheduled", "send_at")
            due = datetime.fromisoformat(email["due_at"])
            assert due > datetime.now(UTC) + timedelta(minutes=110)
        else:
            assert email["status"] == "sent"
    waiting = {rid for rid in people if channels_of(view, rid)["email"]["variant"] == "later"}
    assert {str(m["To"]).split("@")[0] for m in smtp.messages} == set(people) - waiting

    created = campaign(
        admin,
        category="promo.ab",
        to=people,
        event_at=in_seconds(50),
        steps=["-40s", "-25s"],
        variants=VARIANTS,
    )
    first, second = step_view(admin, created, 0), step_view(admin, created, 1)
    for rid in people:
        assert (
            channels_of(first, rid)["email"]["variant"]
            == channels_of(second, rid)["email"]["variant"]
        )
