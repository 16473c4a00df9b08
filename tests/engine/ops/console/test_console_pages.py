"""The console's pages over HTTP: the data panel's figures and charts, health, bad input."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, delete, select

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Feedback, Notification, Preference, Unsubscribe
from engine.timeutil import now
from tests.support import Server

CHART = re.compile(r'src="data:image/svg\+xml;base64,([^"]+)"')


def seed_outcomes(db: Database) -> None:
    """Yesterday and today: flash-sale emails with every outcome, one order receipt."""
    at = now() - timedelta(hours=1)
    outcomes = [
        ("promo.flash_sale", "clicked", None, "up"),
        ("promo.flash_sale", "read", None, "down"),
        ("promo.flash_sale", "delivered", None, None),
        ("promo.flash_sale", "failed", None, None),
        ("promo.flash_sale", "suppressed", "capped", None),
        ("promo.flash_sale", "suppressed", "quiet_hours", None),
        ("order.delivered", "sent", None, "meh"),
    ]
    with db.session() as session:
        session.execute(delete(Delivery))
        for n, (category, status, reason, rating) in enumerate(outcomes, start=1):
            session.add(Notification(id=n, category=category, audience={"ids": ["r"]}))
            row = Delivery(
                notification_id=n,
                recipient_id=f"r-{n}",
                channel="email",
                category=category,
                status=status,
                reason=reason,
                created_at=at,
            )
            session.add(row)
            session.flush()
            if rating:
                session.add(
                    Feedback(
                        delivery_id=row.id or 0,
                        recipient_id=row.recipient_id,
                        category=category,
                        rating=rating,
                    )
                )


def seed_ab_test(db: Database, recipient_id: str, *, decided: bool = True) -> int:
    """A notification testing variants A and B (weights 1 and 3) on a 20% slice by click
    rate, delivered to `recipient_id` (B) and u-2 (A); once decided, A won on its figures."""
    at = now() - timedelta(hours=1)
    test: dict[str, Any] = {"slice": 0.2, "metric": "click_rate", "wait": 3600}
    if decided:
        test["winner"], test["rule"] = "A", "best"
        test["figures"] = {
            "A": {"sent": 40, "clicked": 6, "click_rate": 0.15},
            "B": {"sent": 38, "clicked": 2, "click_rate": 0.0526},
        }
    with db.session() as session:
        row = Notification(
            category="promo.flash_sale",
            audience={"ids": [recipient_id, "u-2"]},
            recipients=2,
            status="planned",
            variants=[{"name": "A", "weight": 1}, {"name": "B", "weight": 3, "send_after": 600}],
            ab_test=test,
            ab_decide_at=at + timedelta(hours=2) if not decided else at,
            ab_decided_at=at if decided else None,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        for rid, variant in ((recipient_id, "B"), ("u-2", "A")):
            session.add(
                Delivery(
                    notification_id=row.id,
                    recipient_id=rid,
                    channel="email",
                    category="promo.flash_sale",
                    status="delivered",
                    variant=variant,
                    created_at=at,
                )
            )
        return row.id


def test_the_data_panel_shows_each_groups_figures_and_draws_them(
    console: httpx.Client, db: Database
) -> None:
    seed_outcomes(db)
    with db.session() as session:
        # r-3, whose message was delivered, unsubscribed through its link since; r-4
        # unsubscribed elsewhere, which counts against no message.
        (left,) = session.exec(select(Delivery.id).where(col(Delivery.recipient_id) == "r-3"))
        session.add(Preference(recipient_id="r-3", unsubscribed=True))
        session.add(Unsubscribe(recipient_id="r-3", delivery_id=left))
        session.add(Preference(recipient_id="r-4", unsubscribed=True))
        session.add(Unsubscribe(recipient_id="r-4"))
    page = console.get("/console", params={"by": "category"})
    assert page.status_code == 200
    assert "A complaint is a sent delivery rated 👎 or whose own unsubscribe link was used" in (
        page.text
    )
    table = page.text[page.text.index('id="figures"') :]
    flash = table[table.index("promo.flash_sale") :].split("</tr>")[0]
    cells = re.findall(r'<td class="n">(.*?)</td>', flash, re.S)
    # deliveries, sent (clicked, read, delivered), delivered, failed, suppressed + reasons
    assert cells[:4] == ["6", "3", "3", "1"]
    assert cells[4].startswith("2") and "capped 1" in cells[4] and "quiet_hours 1" in cells[4]
    # open 2/3, click 1/3, conversion 0, unsubscribe 1/3, complaint 2/3 (r-2's 👎 and
    # r-3's unsubscribe); 👍 1 of 2 ratings, 👎 1 of 2
    assert cells[5:10] == ["66.7%", "33.3%", "0.0%", "33.3%", "66.7%"]
    assert cells[10:13] == ["50.0%", "0.0%", "50.0%"]
    charts = [base64.b64decode(c).decode() for c in CHART.findall(page.text)]
    assert len(charts) == 4  # over time, rates, suppressed by reason, feedback shares
    assert all(c.lstrip().startswith("<?xml") and "<svg" in c for c in charts)
    assert "<script" not in CHART.sub("", page.text)  # the page itself runs nothing
    assert "promo.flash_sale" in charts[1] and "capped" in charts[2]


def test_the_data_panel_speaks_chinese_with_babel_numbers(
    console: httpx.Client, db: Database
) -> None:
    seed_outcomes(db)
    page = console.get("/console", params={"lang": "zh-CN", "by": "channel", "bucket": "hour"})
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert "投递趋势" in page.text and "打开率" in page.text
    assert "50.0%" in page.text  # 2 of the 4 emails that reached someone were opened
    assert "小时" in page.text


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_campaigns_are_shown_by_name_and_keep_their_id(
    console: httpx.Client, admin: httpx.Client, db: Database
) -> None:
    admin.put(
        "/v1/categories/promo.flash_sale",
        json={
            "name": "Flash sales",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "Sale", "body": "soon"}}},
        },
    ).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    event = (now() + timedelta(days=4)).isoformat()
    made = []
    for name in ("Monthly card sale", None):
        answer = admin.post(
            "/v1/campaigns",
            json={"category": "promo.flash_sale", "to": ["u-1"], "event_at": event}
            | ({"name": name} if name else {}),
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["name"] == name
        made.append(answer.json())
    named, unnamed = made
    assert admin.get(f"/v1/campaigns/{named['id']}").json()["name"] == "Monthly card sale"
    with db.session() as session:  # each campaign's first step reached u-1
        for campaign in made:
            session.add(
                Delivery(
                    notification_id=int(campaign["steps"][0]["notification_id"]),
                    recipient_id="u-1",
                    channel="inapp",
                    category="promo.flash_sale",
                    status="delivered",
                )
            )

    rows = admin.get("/v1/stats", params={"by": "campaign"}).json()["items"]
    shown = {r["campaign"]: r["campaign_name"] for r in rows}
    assert shown == {named["id"]: "Monthly card sale", unnamed["id"]: None}
    page = console.get("/console", params={"by": "campaign"})
    assert page.status_code == 200
    table = page.text[page.text.index('id="figures"') :]
    assert f'<th scope="row">Monthly card sale · #{named["id"]}</th>' in table
    assert f'<th scope="row">#{unnamed["id"]}</th>' in table
    charts = [base64.b64decode(c).decode() for c in CHART.findall(page.text)]
    assert "Monthly card sale" in charts[1]


def test_a_bad_range_or_grouping_is_a_422_naming_the_field(console: httpx.Client) -> None:
    for params, field in (
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-11-30", "to": "2026-11-01"}, "from"),
        ({"bucket": "minute"}, "bucket"),
        ({"from": "2026-01-01", "to": "2026-11-30", "bucket": "hour"}, "bucket"),
        ({"by": "recipient"}, "by"),
    ):
        page = console.get("/console", params=params)
        assert page.status_code == 422, params
        assert f"Field “{field}”" in page.text, params


def test_health_shows_queues_and_the_schedulers_last_run(
    console: httpx.Client, settings: Settings
) -> None:
    page = console.get("/console/health")
    assert page.status_code == 200
    for queue in ("critical", "normal", "bulk"):
        assert f'<th scope="row">{queue}</th>' in page.text
    assert "No run recorded yet" in page.text
    from engine.pipeline.scheduler import note_run
    from engine.worker.broker import make_broker
    from engine.worker.runtime import Runtime

    rt = Runtime(settings, make_broker(settings))
    try:
        note_run(rt)
    finally:
        rt.close()
    page = console.get("/console/health")
    assert "No run recorded yet" not in page.text
    assert "UTC" in page.text[page.text.index('id="scheduler-last-run"') :][:200]


def test_a_recipients_page_shows_their_name_and_attributes_escaped(
    console: httpx.Client, admin: httpx.Client
) -> None:
    attributes = {
        "level": "gold",
        "joined": "2024-03-01",
        "vip": True,
        "prefs": {"theme": "dark", "sizes": [38, 39]},
        "bio": "<script>alert(1)</script>",
    }
    admin.put("/v1/recipients/u-7", json={"name": "Zoë <b>Z</b>", "attributes": attributes})
    page = console.get("/console/recipients/u-7")
    assert page.status_code == 200
    assert '<dd id="name">Zoë &lt;b&gt;Z&lt;/b&gt;</dd>' in page.text
    shown = page.text[page.text.index('<div id="attributes"') :]
    for pair in (
        "<dt>level</dt><dd>gold</dd>",
        "<dt>joined</dt><dd>2024-03-01</dd>",
        "<dt>vip</dt><dd>true</dd>",
        "<dt>theme</dt><dd>dark</dd>",
        "<dt>sizes</dt><dd>[38, 39]</dd>",
        "<dt>bio</dt><dd>&lt;script&gt;alert(1)&lt;/script&gt;</dd>",
    ):
        assert pair in shown
    assert "<script>" not in page.text
    assert "自定义属性" in console.get("/console/recipients/u-7?lang=zh-CN").text


def test_a_notifications_page_shows_its_ab_test_as_the_api_does(
    console: httpx.Client, admin: httpx.Client, db: Database
) -> None:
    nid = seed_ab_test(db, "u-8")
    api = admin.get(f"/v1/notifications/{nid}").json()["ab_test"]
    assert api["winner"] == "A"
    page = console.get(f"/console/messages/{nid}").text
    test = page[page.index('id="ab-test"') : page.index('id="h-deliveries"')]
    assert "<dt>Test slice</dt><dd>20.0%</dd>" in test
    assert "<dt>Chosen on</dt><dd>Click rate</dd>" in test
    decided = api["decided_at"][:19].replace("T", " ")
    assert f'<strong>A</strong> <span class="muted">chosen {decided} UTC' in test
    assert "the best rate over the slice" in test
    rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", test)
    cells = [re.sub(r"<[^>]+>", " ", r).split() for r in rows]
    assert cells == [
        ["A", "winner", "1", "(25.0%)", "–", "40", "6", "15.0%"],
        ["B", "3", "(75.0%)", "600", "s", "38", "2", "5.3%"],
    ]
    variants = re.findall(r'<td class="variant">(.*?)</td>', page)
    assert variants == ["B", "A"]
    assert "胜出版本" in console.get(f"/console/messages/{nid}?lang=zh-CN").text


def test_an_undecided_ab_test_says_when_its_winner_is_chosen(
    console: httpx.Client, admin: httpx.Client, db: Database
) -> None:
    nid = seed_ab_test(db, "u-9", decided=False)
    decide_at = admin.get(f"/v1/notifications/{nid}").json()["ab_test"]["decide_at"]
    page = console.get(f"/console/messages/{nid}").text
    test = page[page.index('id="ab-test"') : page.index('id="h-deliveries"')]
    assert f"<dt>Winner chosen at</dt><dd>{decide_at[:19].replace('T', ' ')} UTC</dd>" in test
    assert "not chosen yet" in test
    assert "Clicked" not in test  # no figures before the decision


def test_an_unknown_console_address_is_the_consoles_own_not_found_page(
    console: httpx.Client, server: Server
) -> None:
    for path in ("/console/nope", "/console/recipients/u-1/nope", "/console/"):
        answer = console.get(path)
        assert answer.status_code == 404
        assert answer.headers["Content-Type"].startswith("text/html")
        assert "<h1>Not found</h1>" in answer.text
        assert "The console has no page at this address." in answer.text
        assert "Sign out" in answer.text  # the console's navigation
        assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
    chinese = console.get("/console/nope?lang=zh-CN")
    assert chinese.status_code == 404
    assert "<h1>未找到</h1>" in chinese.text and "控制台没有这个地址的页面。" in chinese.text
    with httpx.Client(base_url=server.url) as stranger:  # not signed in: no navigation
        answer = stranger.get("/console/nope")
        assert answer.status_code == 404
        assert "<h1>Not found</h1>" in answer.text and "Sign out" not in answer.text
        assert stranger.get("/v1/nope").json()["error"]["code"] == "not_found"
