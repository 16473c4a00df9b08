"""Poison stays alone: a delivery whose template or channel raises ends `failed` with the
error at once, and every other delivery in its batch, chunk or scheduler release goes on;
work that keeps failing is ended after a bounded number of attempts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col, select

from engine.pipeline import delivery, planning
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification, PlanChunk, Preference
from engine.worker import runtime
from engine.worker.broker import make_broker
from tests.engine.conftest import Processes, recipient, send, settled, wait_for
from tests.support import Sink

CALC = {
    "name": "Calculated",
    "kind": "promotional",
    "priority": "normal",
    "channels": ["inapp", "webhook"],
    "templates": {"inapp": {"en": {"title": "You saved {{ data.a / data.b }}", "body": "ok"}}},
}


def deliveries(db: Database, nid: str) -> list[Delivery]:
    with db.session() as session:
        return list(session.exec(select(Delivery).where(col(Delivery.notification_id) == int(nid))))


def _quiet_now() -> dict[str, Any]:
    at = datetime.now(UTC)
    return {
        "enabled": True,
        "timezone": "UTC",
        "start": (at - timedelta(hours=1)).strftime("%H:%M"),
        "end": (at + timedelta(hours=2)).strftime("%H:%M"),
    }


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"a": 1, "b": 0}, "ZeroDivisionError"),
        ({"a": "one", "b": 2}, "TypeError"),
    ],
)
def test_a_template_that_raises_fails_its_deliveries_at_once_beside_healthy_sends(
    admin: httpx.Client,
    pipeline: Processes,
    db: Database,
    sink: tuple[Sink, str],
    data: dict[str, Any],
    error: str,
) -> None:
    receiver, url = sink
    admin.put("/v1/categories/promo.calc", json=CALC).raise_for_status()
    people = [f"p{i:02d}" for i in range(30)]
    for rid in people:
        recipient(admin, rid, webhook_url=f"{url}/hook/{rid}")
    poisoned = send(admin, category="promo.calc", to=people, data=data)
    healthy = send(admin, category="promo.calc", to=people, data={"a": 9, "b": 3})

    view = wait_for(lambda: settled(admin, poisoned), timeout=20)
    assert view["counts"]["failed"] == 2 * len(people), view["counts"]
    for row in deliveries(db, poisoned):
        assert row.status == "failed" and error in (row.error or ""), (row.channel, row.error)
        assert row.attempts == 1  # ended at once, not by retries or the stall timer

    fine = wait_for(lambda: settled(admin, healthy), timeout=20)
    assert fine["counts"]["delivered"] == 2 * len(people), fine["counts"]
    inbox = admin.get(f"/v1/recipients/{people[0]}/inbox").json()
    assert [item["title"] for item in inbox["items"]] == ["You saved 3.0"]
    hits = receiver.by_path()
    assert sorted(hits) == [f"/hook/{rid}" for rid in people]  # healthy ones only, once each
    assert all(len(h) == 1 for h in hits.values())


def test_an_oversized_range_in_a_template_fails_only_that_category(
    admin: httpx.Client, pipeline: Processes, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    huge = {
        **CALC,
        "channels": ["webhook"],
        "templates": {"webhook": {"en": {"title": "{{ range(10**9) | length }}", "body": "x"}}},
    }
    admin.put("/v1/categories/promo.huge", json=huge).raise_for_status()
    admin.put("/v1/categories/promo.calc", json=CALC).raise_for_status()
    recipient(admin, "u-1", webhook_url=f"{url}/hook/u-1")
    bad = send(admin, category="promo.huge", to=["u-1"])
    good = send(admin, category="promo.calc", to=["u-1"], data={"a": 1, "b": 4})
    view = wait_for(lambda: settled(admin, bad), timeout=20)
    (only,) = view["deliveries"]
    assert only["status"] == "failed" and "OverflowError" in only["error"]
    assert wait_for(lambda: settled(admin, good), timeout=20)["counts"]["delivered"] == 2
    assert [path for path, _, _ in receiver.requests] == ["/hook/u-1"]


def test_one_poisoned_notification_in_a_scheduler_release_does_not_hold_up_the_rest(
    admin: httpx.Client, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    hook = {
        **CALC,
        "channels": ["webhook"],
        "templates": {"webhook": {"en": {"title": "{{ data.a / data.b }}", "body": "x"}}},
    }
    admin.put("/v1/categories/promo.hook", json=hook).raise_for_status()
    people = [f"q{i:03d}" for i in range(100)]
    for rid in [*people, "z-poisoned"]:
        recipient(admin, rid, webhook_url=f"{url}/hook/{rid}", quiet=True)
        admin.put(
            f"/v1/recipients/{rid}/preferences", json={"quiet_hours": _quiet_now()}
        ).raise_for_status()
    processes.worker()
    healthy = [
        send(admin, category="promo.hook", to=people[i : i + 10], data={"a": 1, "b": 1})
        for i in range(0, 100, 10)
    ]
    # another recipient: released together, promotions to one person would collapse
    poisoned = send(admin, category="promo.hook", to=["z-poisoned"], data={"a": 1, "b": 0})
    for nid in [*healthy, poisoned]:
        view = wait_for(lambda nid=nid: settled(admin, nid), timeout=30)
        assert view["counts"]["scheduled"] == len(view["deliveries"]), view["counts"]
    with db.session() as session:  # the quiet hours end: everything is due in one release
        session.execute(update(Preference).values(quiet_hours={"enabled": False}))
        session.execute(
            update(Delivery)
            .where(col(Delivery.status) == "scheduled")
            .values(due_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    processes.scheduler()
    wait_for(lambda: len(receiver.requests) >= 100, timeout=30)
    wait_for(lambda: deliveries(db, poisoned)[0].status == "failed", timeout=10)
    (bad,) = deliveries(db, poisoned)
    assert "ZeroDivisionError" in (bad.error or "")
    for nid in healthy:
        view = wait_for(lambda nid=nid: settled(admin, nid), timeout=10)
        assert view["counts"]["delivered"] == 10
    assert sorted(path for path, _, _ in receiver.requests) == [f"/hook/{r}" for r in people]


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[runtime.Runtime]:
    """A worker's runtime on the test database and Redis (no worker runs the jobs)."""
    rt = runtime.Runtime(settings, make_broker(settings))
    yield rt
    rt.close()


def test_a_chunk_that_keeps_failing_is_ended_after_its_attempts(
    admin: httpx.Client, db: Database, rt: runtime.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.put("/v1/categories/promo.calc", json=CALC).raise_for_status()
    for rid in ("u-1", "u-2"):
        recipient(admin, rid)
    nid = int(send(admin, category="promo.calc", to=["u-1", "u-2"], data={"a": 1, "b": 1}))

    def broken(*_: Any) -> Any:
        raise RuntimeError("a planning bug")

    monkeypatch.setattr(planning, "_plan", broken)
    planning.plan(rt, nid)  # the inline plan fails: the chunk is left to a job of its own
    for attempt in range(1, rt.settings.plan_max_attempts):
        with pytest.raises(RuntimeError):  # Dramatiq retries the job with backoff
            planning.plan_chunk(rt, nid, 0)
        with db.session() as session:
            chunk = session.get(PlanChunk, (nid, 0))
            assert chunk is not None and (chunk.status, chunk.attempts) == ("pending", attempt)
    planning.plan_chunk(rt, nid, 0)  # the last attempt ends it instead of raising
    with db.session() as session:
        chunk = session.get(PlanChunk, (nid, 0))
        notification = session.get(Notification, nid)
        assert chunk is not None and chunk.status == "failed"
        assert chunk.error == "RuntimeError: a planning bug"
        assert notification is not None and notification.status == "planned"
    planning.plan_chunk(rt, nid, 0)  # a late duplicate message finds nothing to do


def test_a_deliver_job_that_keeps_failing_before_sending_ends_its_deliveries(
    admin: httpx.Client, db: Database, rt: runtime.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = {**CALC, "channels": ["webhook"]}
    admin.put("/v1/categories/promo.hook", json=hook).raise_for_status()
    recipient(admin, "u-1", webhook_url="http://127.0.0.1:9/hook")
    nid = int(send(admin, category="promo.hook", to=["u-1"], data={"a": 1, "b": 1}))
    planning.plan(rt, nid)
    (row,) = deliveries(db, str(nid))
    assert row.id is not None and row.status == "queued"

    def broken(*_: Any) -> Any:
        raise RuntimeError("a delivery bug")

    monkeypatch.setattr(delivery, "_send", broken)
    for attempt in range(1, rt.settings.delivery_max_attempts):
        with pytest.raises(RuntimeError):
            delivery.deliver(rt, [row.id])
        (again,) = deliveries(db, str(nid))
        assert (again.status, again.attempts) == ("queued", attempt)  # the retry can claim it
    with pytest.raises(RuntimeError):
        delivery.deliver(rt, [row.id])
    (ended,) = deliveries(db, str(nid))
    assert ended.status == "failed" and ended.error == "RuntimeError: a delivery bug"
