"""`send_at: "best"` through the API, real worker and scheduler processes, Redis, SQL and
SMTP: each recipient's deliveries wait for the local hour they engage most, learned from
their history; released, a pause made meanwhile still wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import update
from sqlmodel import col

from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Delivery
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, send_and_settle, settled, wait_for
from tests.support import Mailbox

ZONE = "Asia/Shanghai"


def habit_hour() -> int:
    """A local hour that is not the current one nor the next: it cannot be "now"."""
    return (datetime.now(ZoneInfo(ZONE)).hour + 5) % 24


def give_history(admin: httpx.Client, db: Database, rid: str, hour: int, days: int) -> None:
    """`days` reads by `rid`, one a day at `hour` local time (receipts as if they had
    happened then)."""
    view = send_and_settle(admin, category="promo.warmup", to=[rid])
    inbox = channels_of(view, rid)["inapp"]["id"]
    local = datetime.now(ZoneInfo(ZONE))
    with db.session() as session:
        bulk.add_events(
            session,
            [
                {
                    "delivery_id": int(inbox),
                    "status": "read",
                    "at": (local - timedelta(days=d + 1))
                    .replace(hour=hour, minute=20)
                    .astimezone(UTC),
                }
                for d in range(days)
            ],
        )


def test_each_recipient_waits_for_their_best_hour_and_a_pause_still_wins(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox, db: Database
) -> None:
    category(admin, "promo.warmup", channels=["inapp"])
    category(admin, "promo.best", channels=["inapp", "email"])
    hour = habit_hour()
    for rid in ("habit", "newcomer"):
        recipient(admin, rid, email=f"{rid}@example.com", timezone=ZONE)
    give_history(admin, db, "habit", hour, days=6)

    nid = send(admin, category="promo.best", to=["habit", "newcomer"], send_at="best")
    view = wait_for(lambda: settled(admin, nid), timeout=60)
    for rid in ("habit", "newcomer"):  # the newcomer gets the category's best hour
        for channel in ("inapp", "email"):
            delivery = channels_of(view, rid)[channel]
            assert (delivery["status"], delivery["reason"]) == ("scheduled", "best_time"), rid
            due = datetime.fromisoformat(delivery["due_at"]).astimezone(ZoneInfo(ZONE))
            assert (due.hour, due.minute) == (hour, 0)
            assert datetime.now(UTC) < due <= datetime.now(UTC) + timedelta(hours=24)
    assert smtp.messages == []

    # The hour comes (the due times pass); the newcomer paused meanwhile.
    paused = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    admin.put("/v1/recipients/newcomer/preferences", json={"paused_until": paused})
    with db.session() as session:
        session.execute(
            update(Delivery)
            .where(col(Delivery.notification_id) == int(nid))
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )

    def released() -> dict[str, object] | None:
        current = settled(admin, nid)
        if current is None or current["counts"].get("scheduled"):
            return None
        return current

    final = wait_for(released, timeout=60)
    assert channels_of(final, "habit")["email"]["status"] == "sent"
    newcomer = channels_of(final, "newcomer")["email"]
    assert (newcomer["status"], newcomer["reason"]) == ("suppressed", "paused")
    assert [str(m["To"]) for m in smtp.messages] == ["habit@example.com"]


def test_a_latest_time_bounds_the_wait(
    admin: httpx.Client, pipeline: Processes, db: Database
) -> None:
    category(admin, "promo.warmup", channels=["inapp"])
    category(admin, "promo.best", channels=["inapp", "email"])
    recipient(admin, "habit", email="habit@example.com", timezone=ZONE)
    give_history(admin, db, "habit", habit_hour(), days=6)
    latest = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    nid = send(
        admin, category="promo.best", to=["habit"], send_at="best", latest_at=latest.isoformat()
    )
    email = channels_of(wait_for(lambda: settled(admin, nid), timeout=60), "habit")["email"]
    assert (email["status"], email["reason"]) == ("scheduled", "best_time")
    assert datetime.fromisoformat(email["due_at"]) == latest


def test_bad_best_time_requests_are_refused_naming_the_field(admin: httpx.Client) -> None:
    category(admin, "promo.best", channels=["inapp"])
    recipient(admin, "u-1")
    for body, field in (
        ({"send_at": "soonish"}, "send_at"),
        ({"send_at": "2030-01-01T00:00:00Z", "latest_at": "2030-01-02T00:00:00Z"}, "latest_at"),
        ({"send_at": "best", "latest_at": "tomorrow"}, "latest_at"),
    ):
        response = admin.post(
            "/v1/notifications", json={"category": "promo.best", "to": ["u-1"], **body}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
