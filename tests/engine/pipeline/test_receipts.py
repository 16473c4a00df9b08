"""Receipts without the pipeline: events move a delivery forward, feedback feeds back."""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from sqlmodel import select

from engine.store.db import Database
from engine.store.models import Delivery, Feedback

NOTIFICATION_IDS = itertools.count(1)
PROMO = {
    "name": "Flash sales",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["inapp", "email"],
    "templates": {"inapp": {"en": {"title": "Sale", "body": "today"}}},
}


def _delivered(
    db: Database,
    category: str,
    channel: str = "inapp",
    status: str = "delivered",
    recipient: str = "u-1",
) -> int:
    with db.session() as session:
        row = Delivery(
            notification_id=next(NOTIFICATION_IDS),
            recipient_id=recipient,
            channel=channel,
            category=category,
            status=status,
            title="Sale",
            body="today",
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def test_thumbs_down_tightens_the_recipients_cap_step_by_step(
    admin: httpx.Client, db: Database
) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    first, second = (
        _delivered(db, "promo.flash_sale"),
        _delivered(db, "promo.flash_sale", "email", "sent"),
    )
    answer = admin.post(
        f"/v1/deliveries/{first}/feedback", json={"rating": "down", "comment": "too many"}
    )
    assert answer.json()["cap_lowered_to"] == {"count": 3, "per": "1w"}
    prefs = admin.get("/v1/recipients/u-1/preferences").json()
    assert prefs["categories"]["promo.flash_sale"]["caps"] == [{"count": 3, "per": "1w"}]
    # Rating the same message 👎 again changes nothing; a second 👎 tightens further.
    again = admin.post(f"/v1/deliveries/{first}/feedback", json={"rating": "down"})
    assert again.json()["cap_lowered_to"] is None
    tighter = admin.post(f"/v1/deliveries/{second}/feedback", json={"rating": "down"})
    assert tighter.json()["cap_lowered_to"] == {"count": 1, "per": "1w"}
    up = admin.post(f"/v1/deliveries/{first}/feedback", json={"rating": "up"})
    assert up.json()["cap_lowered_to"] is None


def test_events_never_move_a_delivery_backwards(admin: httpx.Client, db: Database) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    did = _delivered(db, "promo.flash_sale")
    assert (
        admin.post(f"/v1/deliveries/{did}/events", json={"type": "clicked"}).json()["status"]
        == "clicked"
    )
    assert (
        admin.post(f"/v1/deliveries/{did}/events", json={"type": "opened"}).json()["status"]
        == "clicked"
    )
    bad = admin.post(f"/v1/deliveries/{did}/events", json={"type": "liked"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "type"
    missing = admin.post("/v1/deliveries/999999/events", json={"type": "read"})
    assert missing.status_code == 404
    history = admin.get("/v1/recipients/u-1/deliveries").json()["items"][0]["events"]
    assert [e["status"] for e in history] == ["clicked", "opened"]


def test_stats_show_rates_and_feedback_per_category_and_channel(
    admin: httpx.Client, db: Database
) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    ids = [_delivered(db, "promo.flash_sale") for _ in range(4)]
    _delivered(db, "promo.flash_sale", "email", "suppressed")
    admin.post(f"/v1/deliveries/{ids[0]}/events", json={"type": "read"}).raise_for_status()
    admin.post(f"/v1/deliveries/{ids[1]}/events", json={"type": "clicked"}).raise_for_status()
    admin.post(f"/v1/deliveries/{ids[1]}/events", json={"type": "converted"}).raise_for_status()
    admin.post(f"/v1/deliveries/{ids[2]}/feedback", json={"rating": "down"}).raise_for_status()
    by_category = admin.get("/v1/stats").json()["items"]
    assert by_category == [
        {
            "category": "promo.flash_sale",
            "deliveries": 5,
            "sent": 4,
            "delivered": 4,
            "opened": 2,
            "clicked": 1,
            "converted": 1,
            "suppressed": 1,
            "suppressed_by_reason": {"unknown": 1},
            "failed": 0,
            "scheduled": 0,
            "feedback": {"up": 0, "meh": 0, "down": 1},
            "unsubscribed": 0,
            "complained": 1,
            "open_rate": 0.5,
            "click_rate": 0.25,
            "conversion_rate": 0.25,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.25,
            "feedback_rates": {"up": 0.0, "meh": 0.0, "down": 0.25},
        }
    ]
    by_channel = {
        r["channel"]: r for r in admin.get("/v1/stats", params={"by": "channel"}).json()["items"]
    }
    assert by_channel["email"]["sent"] == 0 and by_channel["email"]["open_rate"] is None
    assert admin.get("/v1/stats", params={"by": "colour"}).json()["error"]["field"] == "by"
    assert admin.get("/v1/stats", params={"from": "yesterday"}).json()["error"]["field"] == "from"


def _unsubscribe_through(admin: httpx.Client, rid: str, delivery_id: int) -> None:
    """One-click unsubscribe through the link a message of `delivery_id` carries."""
    minted = admin.post(f"/v1/recipients/{rid}/links").json()["unsubscribe"]
    link = f"{urlsplit(minted).path}?d={delivery_id}"
    assert admin.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_a_complaint_is_a_thumbs_down_or_an_unsubscribe_counted_once_per_delivery(
    admin: httpx.Client, db: Database
) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    people = [f"u-{n}" for n in range(1, 6)]
    for rid in [*people, "u-6"]:
        admin.put(f"/v1/recipients/{rid}", json={}).raise_for_status()
    ids = {rid: _delivered(db, "promo.flash_sale", recipient=rid) for rid in people}
    for rid, rating in (("u-1", "down"), ("u-3", "down"), ("u-5", "up")):
        answer = admin.post(f"/v1/deliveries/{ids[rid]}/feedback", json={"rating": rating})
        answer.raise_for_status()
    for rid in ("u-2", "u-3"):  # u-3 rated it 👎 and left as well: one complaint
        _unsubscribe_through(admin, rid, ids[rid])
    # An unsubscribe made elsewhere (here the API) counts against no message.
    admin.put("/v1/recipients/u-4/preferences", json={"unsubscribed": True}).raise_for_status()
    # A suppressed delivery's recipient who rates nothing and leaves counts nowhere.
    suppressed = _delivered(db, "promo.flash_sale", status="suppressed", recipient="u-6")
    _unsubscribe_through(admin, "u-6", suppressed)

    (row,) = admin.get("/v1/stats").json()["items"]
    assert row["sent"] == 5 and row["feedback"] == {"up": 1, "meh": 0, "down": 2}
    assert (row["unsubscribed"], row["complained"]) == (2, 3)
    assert row["unsubscribe_rate"] == 0.4
    assert row["complaint_rate"] == 0.6
    assert row["feedback_rates"]["down"] == 0.4
    spec = admin.get("/v1/openapi.json").json()["components"]["schemas"]["StatsRow"]["properties"]
    assert "unsubscribe" in spec["complaint_rate"]["description"]


@pytest.mark.parametrize("status", ["suppressed", "failed", "scheduled", "queued"])
def test_feedback_on_a_message_that_never_arrived_is_a_conflict_naming_its_status(
    admin: httpx.Client, db: Database, status: str
) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    did = _delivered(db, "promo.flash_sale", "email", status)
    answer = admin.post(f"/v1/deliveries/{did}/feedback", json={"rating": "down"})
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["code"] == "not_delivered" and f"is {status}" in error["message"]
    # Nothing was recorded, and the recipient's cap was not tightened by it.
    with db.session() as session:
        assert session.exec(select(Feedback)).first() is None
    prefs = admin.get("/v1/recipients/u-1/preferences").json()
    assert prefs["categories"]["promo.flash_sale"]["caps"] == []
    stats = admin.get("/v1/stats").json()["items"][0]
    assert stats["feedback"] == {"up": 0, "meh": 0, "down": 0}


@pytest.mark.parametrize("status", ["suppressed", "failed", "scheduled"])
def test_engagement_on_a_message_that_never_went_out_is_a_conflict(
    admin: httpx.Client, db: Database, status: str
) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    did = _delivered(db, "promo.flash_sale", "email", status)
    answer = admin.post(f"/v1/deliveries/{did}/events", json={"type": "opened"})
    assert answer.status_code == 409 and f"is {status}" in answer.json()["error"]["message"]
    stats = admin.get("/v1/stats").json()["items"][0]
    assert stats["opened"] == 0 and stats["sent"] == 0


def test_stats_count_feedback_only_on_delivered_messages(admin: httpx.Client, db: Database) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    delivered = _delivered(db, "promo.flash_sale")
    suppressed = _delivered(db, "promo.flash_sale", "email", "suppressed")
    admin.post(f"/v1/deliveries/{delivered}/feedback", json={"rating": "up"}).raise_for_status()
    # A rating stored before the rule existed, on a message that was never sent.
    with db.session() as session:
        session.add(
            Feedback(
                delivery_id=suppressed,
                recipient_id="u-1",
                category="promo.flash_sale",
                rating="down",
            )
        )
    stats = admin.get("/v1/stats").json()["items"][0]
    assert stats["feedback"] == {"up": 1, "meh": 0, "down": 0}
    assert stats["complaint_rate"] == 0.0


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_ratings_at_the_same_moment_take_turns(admin: httpx.Client, db: Database) -> None:
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    admin.put("/v1/recipients/u-1", json={}).raise_for_status()
    did = _delivered(db, "promo.flash_sale")
    start = threading.Barrier(6)

    def rate(n: int) -> int:
        start.wait()
        answer = admin.post(f"/v1/deliveries/{did}/feedback", json={"rating": "down"})
        return answer.status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(rate, range(6))) == [200] * 6
    with db.session() as session:
        assert len(session.exec(select(Feedback)).all()) == 1
    # One 👎 on one message tightens the cap one step, however many times it was sent.
    prefs = admin.get("/v1/recipients/u-1/preferences").json()
    assert prefs["categories"]["promo.flash_sale"]["caps"] == [{"count": 3, "per": "1w"}]
