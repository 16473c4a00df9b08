"""A notification to a topic's followers through real worker and scheduler processes:
it is cut into chunks like a segment, and every follower's preferences, caps, quiet
hours, pause, unsubscribe and collapse decide their copy as for a plain notification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import col, select

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import PlanChunk
from tests.engine.conftest import Processes, recipient, send, send_and_settle, settled, wait_for
from tests.support import Mailbox

TOPIC = "card.genshin-monthly"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Chunks of two recipients, so a handful of followers is planned in several jobs."""
    return settings.model_copy(update={"plan_chunk_size": 2})


def by_recipient(view: dict[str, Any]) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(d["recipient"], d["channel"]): (d["status"], d["reason"]) for d in view["deliveries"]}


def _quiet_now(zone: str) -> dict[str, Any]:
    local = datetime.now(ZoneInfo(zone))
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=2)).strftime("%H:%M")
    return {"enabled": True, "start": start, "end": end, "timezone": zone}


def test_a_topic_reaches_each_follower_as_their_preferences_say(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    admin.put(
        "/v1/categories/promo.card_back",
        json={
            "name": "Cards back in stock",
            "kind": "promotional",
            "priority": "high",
            "channels": ["inapp", "email"],
            "collapse_window": "1h",
            "templates": {"inapp": {"en": {"title": "{{ data.card }} is back", "body": "."}}},
        },
    ).raise_for_status()
    people = ("fan", "no-email", "unsubscribed", "paused", "quiet", "capped", "stranger")
    for rid in people:
        recipient(admin, rid, email=f"{rid}@example.com")
    prefs = {
        "no-email": {"channels": {"email": False}},
        "unsubscribed": {"unsubscribed": True},
        "paused": {"paused_until": (datetime.now(UTC) + timedelta(days=2)).isoformat()},
        "quiet": {"quiet_hours": _quiet_now("Asia/Shanghai")},
        "capped": {"categories": {"promo.card_back": {"caps": [{"count": 1, "per": "1d"}]}}},
    }
    for rid, change in prefs.items():
        admin.put(f"/v1/recipients/{rid}/preferences", json=change).raise_for_status()
    follows = [{"recipient": rid, "topic": TOPIC} for rid in people if rid != "stranger"]
    admin.post("/v1/follows/bulk", json={"follows": follows}).raise_for_status()
    # The capped follower already had today's one card notice.
    send_and_settle(admin, category="promo.card_back", to=["capped"], data={"card": "Earlier"})
    smtp.reset()

    data = {"card": "Genshin monthly"}
    nid = send(admin, category="promo.card_back", to={"topic": TOPIC}, data=data, collapse_key="g")
    view = wait_for(lambda: settled(admin, nid))
    with db.session() as session:
        chunks = session.exec(select(PlanChunk).where(col(PlanChunk.notification_id) == int(nid)))
        assert len(list(chunks)) == 3  # six followers, two per chunk
    assert view["recipients"] == 6
    got = by_recipient(view)
    assert {rid for rid, _ in got} == set(people) - {"stranger"}
    assert got[("fan", "email")] == ("sent", None)
    assert got[("fan", "inapp")] == ("delivered", None)
    assert got[("no-email", "email")] == ("suppressed", "opted_out")
    assert got[("no-email", "inapp")] == ("delivered", None)
    assert got[("unsubscribed", "email")] == ("suppressed", "unsubscribed")
    assert got[("unsubscribed", "inapp")] == ("suppressed", "unsubscribed")
    assert got[("paused", "email")] == ("suppressed", "paused")
    assert got[("quiet", "email")] == ("scheduled", "quiet_hours")
    assert got[("capped", "email")] == ("suppressed", "capped")
    assert got[("capped", "inapp")] == ("suppressed", "capped")
    assert sorted(str(m["To"]) for m in smtp.messages) == ["fan@example.com"]
    assert smtp.messages[0]["Subject"] == "Genshin monthly is back"

    # The same news again within the collapse window: nobody gets it twice.
    again = send_and_settle(
        admin, category="promo.card_back", to={"topic": TOPIC}, data=data, collapse_key="g"
    )
    assert by_recipient(again)[("fan", "email")] == ("suppressed", "duplicate")
    assert by_recipient(again)[("fan", "inapp")] == ("suppressed", "duplicate")
    assert len(smtp.messages) == 1

    # Unfollowing stops the next one.
    admin.delete(f"/v1/recipients/fan/follows/{TOPIC}").raise_for_status()
    later = send_and_settle(admin, category="promo.card_back", to={"topic": TOPIC}, data=data)
    assert "fan" not in {rid for rid, _ in by_recipient(later)}
