"""What a real run writes: every status and reason stored by the API, worker and scheduler
processes is a member of its enum, each reason sits beside the status it explains, and
every delivery ends settled or held for a later time with why."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from engine.store.db import Database
from engine.store.states import (
    HOLDS,
    SETTLED,
    SUPPRESSIONS,
    ChunkStatus,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, send_and_settle, wait_for
from tests.support import Sink


def _quiet_now() -> dict[str, Any]:
    """Quiet hours from an hour ago to two hours ahead, whatever the clock says."""
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=2))
    return {"quiet_hours": {"enabled": True, "start": start, "end": end.strftime("%H:%M")}}


def _story(admin: httpx.Client, url: str) -> None:
    """A day's worth of fates: delivered, sent, read, cancelled elsewhere, opted out, no
    address, capped, expired, held for quiet hours and by escalation, retried and failed."""
    category(
        admin,
        "promo.sale",
        priority="normal",
        channels=["inapp", "push", "email"],
        escalate_after="1h",
        caps=[{"count": 1, "per": "1h"}],
    )
    category(admin, "order.hook", kind="transactional", channels=["webhook"])
    recipient(admin, "reader", email="reader@example.com", push_tokens=["tok-r"])
    recipient(admin, "opted", email="opted@example.com")
    admin.put(
        "/v1/recipients/opted/preferences", json={"channels": {"email": False}}
    ).raise_for_status()
    recipient(admin, "nowhere")
    recipient(admin, "asleep", push_tokens=["tok-a"], quiet=True)
    admin.put("/v1/recipients/asleep/preferences", json=_quiet_now()).raise_for_status()
    recipient(admin, "hook", webhook_url=f"{url}/ok/hook")
    recipient(admin, "flaky", webhook_url=f"{url}/fail/flaky")

    people = ["reader", "opted", "nowhere", "asleep"]
    view = send_and_settle(admin, category="promo.sale", to=people, data={"t": "deal"})
    inbox = channels_of(view, "reader")["inapp"]
    admin.post(f"/v1/deliveries/{inbox['id']}/events", json={"type": "read"}).raise_for_status()
    send_and_settle(admin, category="promo.sale", to=["reader"])  # over the hourly cap
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    send_and_settle(admin, category="promo.sale", to=["opted"], expires_at=past)
    hooks = send(
        admin, category="order.hook", to=["hook", "flaky"], content={"title": "t", "body": "b"}
    )

    def hooks_done() -> dict[str, Any] | None:
        current = admin.get(f"/v1/notifications/{hooks}").json()
        finished = current["deliveries"] and all(
            d["status"] in ("delivered", "failed") for d in current["deliveries"]
        )
        return current if finished else None

    last = wait_for(hooks_done, timeout=60)
    assert {d["status"] for d in last["deliveries"]} == {"delivered", "failed"}

    def escalation_ended() -> dict[str, Any] | None:
        current = admin.get(f"/v1/notifications/{view['id']}").json()
        email = channels_of(current, "reader")["email"]
        return current if email["status"] == "suppressed" else None

    wait_for(escalation_ended, timeout=20)


def test_every_status_and_reason_a_run_writes_is_a_member_of_its_enum(
    admin: httpx.Client, pipeline: Processes, sink: tuple[Sink, str], db: Database
) -> None:
    _story(admin, sink[1])
    with db.session() as session:
        deliveries = session.execute(
            text("SELECT status, reason, due_at, error FROM deliveries")
        ).all()
        events = session.execute(text("SELECT status, reason, detail FROM delivery_events")).all()
        notifications = session.execute(text("SELECT status FROM notifications")).all()
        chunks = session.execute(text("SELECT status FROM plan_chunks")).all()

    statuses = {d[0] for d in deliveries}
    reasons = {d[1] for d in deliveries} - {None}
    assert statuses <= set(DeliveryStatus), statuses - set(DeliveryStatus)
    assert reasons <= set(Reason), reasons - set(Reason)
    assert {e[0] for e in events} <= set(EventStatus)
    assert {e[1] for e in events} - {None} <= set(Reason)
    assert {n[0] for n in notifications} <= set(NotificationStatus)
    assert {c[0] for c in chunks} <= set(ChunkStatus)

    # Each reason beside the status it explains; a failure with its error.
    for status, reason, due_at, error in deliveries:
        if status == DeliveryStatus.SUPPRESSED:
            assert reason in SUPPRESSIONS, (status, reason)
        elif status == DeliveryStatus.SCHEDULED:
            assert reason in HOLDS and due_at is not None, (status, reason)
        else:
            assert reason is None, (status, reason)
        if status == DeliveryStatus.FAILED:
            assert error
        # Accepted work ends settled, or waits for a time it was given with why.
        assert status in SETTLED or status == DeliveryStatus.SCHEDULED, status
    for status, reason, detail in events:
        if status == EventStatus.SUPPRESSED:
            assert reason in SUPPRESSIONS, (status, reason)
        if status == EventStatus.SCHEDULED:
            assert reason in HOLDS, (status, reason)
        if status in (EventStatus.RETRYING, EventStatus.FAILED):
            assert detail, status

    # The story reached every kind of fate it set out to, so the checks above saw them.
    assert statuses >= {"delivered", "sent", "read", "suppressed", "scheduled", "failed"}
    assert reasons >= {
        "opted_out",
        "no_address",
        "capped",
        "expired",
        "quiet_hours",
        "seen_elsewhere",
    }
    assert Counter(e[0] for e in events)["retrying"] == 2
