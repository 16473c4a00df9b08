"""`send_at: "best"` planned in one process: quiet hours may push a best-time delivery
later, never earlier than the recipient's best hour, and all its channels wait together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import httpx
import pytest
from sqlmodel import col, select

from engine.pipeline import planning
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery
from engine.timeutil import aware
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime

SALE = {
    "name": "Member day",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "templates": {
        "inapp": {"en": {"title": "Member day", "body": "today"}},
        "email": {"en": {"subject": "Member day", "text": "today"}},
    },
}


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


@pytest.mark.parametrize("hours_left", [1, 5, 22])
def test_quiet_hours_never_send_a_best_time_email_before_the_best_hour(
    admin: httpx.Client, rt: Runtime, db: Database, hours_left: int
) -> None:
    at = datetime.now(UTC)
    start, end = ((at + timedelta(hours=h)).strftime("%H:%M") for h in (-1, hours_left))
    quiet = {"enabled": True, "start": start, "end": end, "timezone": "UTC"}
    admin.put("/v1/categories/promo.day", json=SALE).raise_for_status()
    admin.put("/v1/recipients/u-1", json={"email": "u-1@example.com"}).raise_for_status()
    admin.put("/v1/recipients/u-1/preferences", json={"quiet_hours": quiet}).raise_for_status()
    answer = admin.post(
        "/v1/notifications", json={"category": "promo.day", "to": ["u-1"], "send_at": "best"}
    )
    assert answer.status_code == 202, answer.text
    planning.plan(rt, int(answer.json()["id"]))

    with db.session() as session:
        rows = {
            d.channel: (d.status, d.reason, aware(d.due_at))
            for d in session.exec(
                select(Delivery).where(col(Delivery.notification_id) == int(answer.json()["id"]))
            )
        }
    status, reason, inapp = rows["inapp"]
    assert (status, reason) == ("scheduled", "best_time") and inapp is not None
    assert rows["email"] == rows["inapp"]  # one moment for the recipient, both copies
    shown, q0, q1 = inapp.time(), time.fromisoformat(start), time.fromisoformat(end)
    inside = q0 <= shown < q1 if q0 < q1 else shown >= q0 or shown < q1
    assert not inside, f"due in quiet hours {start}-{end}: {inapp}"
    # the best hour's start, or the end of quiet hours covering it
    assert inapp.minute == 0 or inapp.strftime("%H:%M") == end
