"""One collapse key, one message: notifications planned at the same moment with one
collapse key reach a recipient once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from engine.catalog import categories, recipients
from engine.pipeline import accept, planning
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.notifications import NotificationIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from preferences import store
from tests.engine.conftest import Processes, recipient, settled, wait_for

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
SENDS = 6
STATUS = {
    "name": "Order status",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "collapse_window": "1h",
    "templates": {"inapp": {"en": {"title": "Your order {{ data.order }}", "body": "moved"}}},
}


def _quiet_now() -> dict[str, Any]:
    """Quiet hours from two hours ago to two hours ahead, so email waits."""
    at = datetime.now(UTC)
    return {
        "enabled": True,
        "start": (at - timedelta(hours=2)).strftime("%H:%M"),
        "end": (at + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": "UTC",
    }


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Iterator[Runtime]:
    rt = Runtime(settings, make_broker(settings))
    yield rt
    rt.close()


@BOTH
@pytest.mark.parametrize("held", [False, True], ids=["sent-at-once", "held-by-quiet-hours"])
@pytest.mark.parametrize("chunked", [False, True], ids=["one-chunk", "chunk-jobs"])
def test_concurrent_plans_with_one_collapse_key_reach_the_recipient_once(
    runtime: Runtime, db: Database, held: bool, chunked: bool
) -> None:
    people = ["u-0", "u-1"] if chunked else ["u-1"]
    if chunked:  # one recipient a chunk: each is planned by its own chunk job
        runtime.settings = runtime.settings.model_copy(update={"plan_chunk_size": 1})
    with db.session() as session:
        categories.upsert(session, "order.status", CategoryIn.model_validate(STATUS))
        known = store.load_categories(session)
        quiet = _quiet_now() if held else {"enabled": False}
        for rid in people:
            recipients.upsert(session, rid, RecipientIn(email=f"{rid}@example.com"))
            store.update(
                session,
                rid,
                PreferencesIn.model_validate({"quiet_hours": quiet}),
                categories=known,
            )
    specs = [
        NotificationIn.model_validate(
            {
                "category": "order.status",
                "to": people,
                "data": {"order": f"#{n}"},
                "collapse_key": "order-42",
                "channels": ["email"] if held else ["inapp"],
            }
        )
        for n in range(SENDS)
    ]
    accepted = accept.accept_all(db, specs, settings=runtime.settings, batch=False)
    start = threading.Barrier(SENDS)

    def plan(notification_id: int) -> None:
        if chunked:
            planning.plan(runtime, notification_id)  # cuts the chunks
        start.wait()  # every plan starts at the same moment, each on its own connection
        if chunked:
            for seq in range(len(people)):
                planning.plan_chunk(runtime, notification_id, seq)
        else:
            planning.plan(runtime, notification_id)

    with ThreadPoolExecutor(SENDS) as pool:
        list(pool.map(plan, [a.id for a in accepted]))

    for rid in people:
        with db.session() as session:
            rows = session.exec(
                select(Delivery.status, Delivery.reason).where(col(Delivery.recipient_id) == rid)
            ).all()
        live = [status for status, _ in rows if status != "suppressed"]
        assert live == (["scheduled"] if held else ["delivered"]), rows
        reasons = sorted(reason for status, reason in rows if status == "suppressed")
        assert reasons == ["collapsed" if held else "duplicate"] * (SENDS - 1), rows


@BOTH
def test_concurrent_sends_through_the_api_reach_the_inbox_once(
    admin: httpx.Client, processes: Processes
) -> None:
    processes.worker("worker-a", threads=3)
    processes.worker("worker-b", threads=3)
    admin.put("/v1/categories/order.status", json=STATUS).raise_for_status()
    recipient(admin, "u-1")
    body = {"category": "order.status", "to": ["u-1"], "collapse_key": "order-42"}
    start = threading.Barrier(SENDS)

    def post(n: int) -> str:
        start.wait()
        answer = admin.post("/v1/notifications", json={**body, "data": {"order": f"#{n}"}})
        assert answer.status_code == 202, answer.text
        return str(answer.json()["id"])

    with ThreadPoolExecutor(SENDS) as pool:
        ids = list(pool.map(post, range(SENDS)))
    for nid in ids:
        wait_for(lambda nid=nid: settled(admin, nid))
    inbox = admin.get("/v1/recipients/u-1/inbox").json()
    assert inbox["unread"] == 1 and len(inbox["items"]) == 1, inbox
