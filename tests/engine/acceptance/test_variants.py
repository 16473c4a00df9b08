"""A/B tests through the API, real worker and scheduler processes, Redis, SQL and SMTP:
each recipient gets the copy of their variant on every channel and every campaign step,
a send-time variant waits, and stats compare the variants."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx

from engine.ops import demo
from engine.pipeline.variants import assign
from engine.settings import Settings
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


README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_campaign_ab_example_shows_what_it_prints(
    admin: httpx.Client, pipeline: Processes, settings: Settings
) -> None:
    """The README's own A/B campaign on a fresh demo install (its campaign is 2): both
    variants appear, and the stats it quotes are the ones the API answers."""
    demo.load(settings, port=8080)
    fans = [f"fan-{i}" for i in range(1, 9)]
    body = {
        "name": "Sale in a minute",
        "category": "promo.flash_sale",
        "to": [{"id": rid} for rid in fans],
        "channels": ["inapp"],
        "event_at": in_seconds(14),
        "steps": ["-10s", "-5s"],
        "data": {"card": "原神月卡", "discount": "8"},
        "variants": [
            {"name": "a", "content": {"title": "Sale soon"}},
            {"name": "b", "content": {"title": "卡卡 saved you a seat"}},
        ],
    }
    created = admin.post("/v1/campaigns", json=body)
    assert created.status_code == 202, created.text
    assert created.json()["id"] == "2"
    first = step_view(admin, created.json(), 0)
    step_view(admin, created.json(), 1)
    got = {d["recipient"]: d for d in first["deliveries"]}
    assert {r for r in fans if got[r]["variant"] == "a"} == {"fan-3", "fan-7", "fan-8"}
    assert got["fan-1"]["variant"] == "b"
    clicked = admin.post(f"/v1/deliveries/{got['fan-1']['id']}/events", json={"type": "clicked"})
    assert clicked.status_code == 200, clicked.text

    stats = admin.get("/v1/stats", params={"by": "variant", "campaign": "2"}).json()
    rows = {r["variant"]: r for r in stats["items"]}
    assert [r["variant"] for r in stats["items"]] == ["b", "a"]
    b, a = rows["b"], rows["a"]
    shown = " ".join(README.read_text().split())
    for row in (b, a):
        figures = ", ".join(
            f'"{k}": {row[k]}' for k in ("deliveries", "sent", "delivered", "opened", "clicked")
        )
        assert f'{{"variant": "{row["variant"]}", {figures}, ' in shown, figures
        rates = f'"open_rate": {row["open_rate"]}, "click_rate": {row["click_rate"]}, …'
        assert rates in shown, rates
        low, high = row["ci95"]["click_rate"]
        assert f'"ci95": {{"click_rate": [{low}, {high}], …}}' in shown, (low, high)
    assert (b["sent"], b["clicked"], a["sent"]) == (10, 1, 6)
    assert stats["significant"]["click_rate"] is False
    assert stats["p_values"]["click_rate"] == 1.0


def test_a_variant_overrides_only_the_fields_it_gives_on_every_channel(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    """The README's variants give only a title: the inbox and the email keep the body the
    notification would have sent without them, under the variant's title."""
    category(
        admin,
        "promo.titles",
        channels=["inapp", "email"],
        templates={
            "inapp": {
                "en": {
                    "title": "{{ data.card }} is back",
                    "body": "{{ data.discount }}% off {{ data.card }}",
                    "action_url": "https://shop.example/sale/{{ data.discount }}",
                }
            },
            "email": {
                "en": {
                    "subject": "{{ data.card }} is back",
                    "text": "Only {{ data.discount }}% off {{ data.card }} today",
                    "html": "<p>Only <b>{{ data.discount }}%</b> off {{ data.card }}</p>",
                }
            },
        },
    )
    people = [f"v-{i}" for i in range(12)]
    for rid in people:
        recipient(admin, rid, email=f"{rid}@example.com")
    variants = [
        {"name": "a", "content": {"title": "Sale soon"}},
        {"name": "b", "content": {"title": "卡卡 saved you a seat"}},
        {  # a variant's template for one field; the rest is the category's
            "name": "c",
            "templates": {
                "inapp": {"en": {"title": "{{ data.card }}: last call"}},
                "email": {"en": {"subject": "{{ data.card }}: last call"}},
            },
        },
    ]
    data = {"card": "原神月卡", "discount": "8"}
    nid = send(admin, category="promo.titles", to=people, data=data, variants=variants)
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    of = {rid: channels_of(view, rid)["email"]["variant"] for rid in people}
    assert set(of.values()) == {"a", "b", "c"}
    title = {"a": "Sale soon", "b": "卡卡 saved you a seat", "c": "原神月卡: last call"}

    for rid in people:
        [item] = admin.get(f"/v1/recipients/{rid}/inbox").json()["items"]
        assert item["title"] == title[of[rid]]
        assert item["body"] == "8% off 原神月卡"
        assert item["action_url"] == "https://shop.example/sale/8"

    wait_for(lambda: len(smtp.raw) == len(people), timeout=30)
    for raw in smtp.raw:
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        rid = str(mail["To"]).split("@")[0]
        assert str(mail["Subject"]) == title[of[rid]]
        text = mail.get_body(preferencelist=("plain",))
        html = mail.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        assert text.get_content().strip() == "Only 8% off 原神月卡 today"
        assert "<p>Only <b>8%</b> off 原神月卡</p>" in html.get_content()

    # Over the notification's own literal content, the same: each variant gives one field.
    smtp.reset()
    own = {"title": "Base title", "body": "Base body", "action_url": "https://shop.example/x"}
    only_body = {"name": "d", "content": {"body": "卡卡 kept you a seat"}}
    nid = send(
        admin, category="promo.titles", to=people, content=own, variants=[variants[0], only_body]
    )
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    expected = {"a": ("Sale soon", "Base body"), "d": ("Base title", "卡卡 kept you a seat")}
    got = {rid: channels_of(view, rid)["inapp"]["variant"] for rid in people}
    assert set(got.values()) == {"a", "d"}
    for rid in people:
        item = admin.get(f"/v1/recipients/{rid}/inbox").json()["items"][0]
        assert (item["title"], item["body"]) == expected[got[rid]]
        assert item["action_url"] == "https://shop.example/x"
    wait_for(lambda: len(smtp.raw) == len(people), timeout=30)
    for raw in smtp.raw:
        mail = message_from_bytes(raw, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        title, text = expected[got[str(mail["To"]).split("@")[0]]]
        plain = mail.get_body(preferencelist=("plain",))
        assert str(mail["Subject"]) == title
        assert plain is not None and plain.get_content().strip() == text
