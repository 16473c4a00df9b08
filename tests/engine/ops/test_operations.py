"""What ops rely on: metrics from the API and the workers, `tidings status`, rate limits
shared through Redis, critical work ahead of a broadcast, and a broadcast that starts
sending while the rest of its audience is still being planned."""

from __future__ import annotations

from pathlib import Path

import httpx

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Notification
from tests.engine.broadcasts import BLAST, ORDER, audience
from tests.engine.conftest import (
    Processes,
    env_for,
    recipient,
    send_and_settle,
    settled,
    status_report,
    wait_for,
)
from tests.support import Sink


def test_metrics_from_api_and_workers(admin: httpx.Client, pipeline: Processes) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1")
    counter = 'tidings_notifications_accepted_total{queue="critical"} '

    def accepted() -> float:  # the API runs in this process: earlier tests count too
        lines = admin.get("/metrics").text.splitlines()
        return next(
            (float(line.removeprefix(counter)) for line in lines if line.startswith(counter)), 0.0
        )

    before = accepted()
    send_and_settle(admin, category="order.delivered", to=["u-1"])
    api = admin.get("/metrics")
    assert api.status_code == 200
    assert accepted() == before + 1
    assert 'tidings_queue_depth{queue="bulk"}' in api.text and "tidings_dead_letters" in api.text

    port = pipeline.env["worker"]["TIDINGS_METRICS_PORT"]

    def scraped() -> str | None:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        return text if "tidings_deliveries_total" in text else None

    worker = wait_for(scraped, timeout=20)
    assert 'tidings_deliveries_total{channel="inapp",status="delivered"} 1.0' in worker
    assert 'tidings_enqueue_to_sent_seconds_count{channel="inapp"} 1.0' in worker


def test_status_command_reports_queues_and_deliveries(
    admin: httpx.Client, settings: Settings, db: Database
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1")
    admin.post("/v1/notifications", json={"category": "order.delivered", "to": ["u-1"]})
    report = status_report(env_for(settings))
    assert report["queues"]["critical"]["waiting"] == 1  # no worker is running
    assert set(report["queues"]) == {"critical", "normal", "bulk", "events"}
    assert "dead" in report["queues"]["bulk"] and "throughput_last_minute" in report


def test_channel_rate_limit_makes_work_wait_not_drop(
    admin: httpx.Client, settings: Settings, db: Database, sink: tuple[Sink, str], tmp_path: Path
) -> None:
    receiver, url = sink
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, 20)
    limited = Processes(settings.model_copy(update={"rate_webhook": "5/s"}), tmp_path)
    try:
        limited.worker("a", threads=4)
        limited.worker("b", threads=4)  # two workers share one limit through Redis
        limited.scheduler()
        view = send_and_settle(admin, timeout=60, category="promo.blast", to={"all": True})
    finally:
        limited.stop_all()
    assert view["counts"]["delivered"] == 20
    arrivals = sorted(receiver.seconds())
    # 20 at 5/s span at least four one-second windows; unlimited they arrive at once.
    assert arrivals[-1] - arrivals[0] >= 2.0, arrivals
    # The limit admits 5 in each one-second window, shared through Redis: when the i-th
    # request arrived, at least i // 5 windows after the first one's had begun. A request
    # admitted late in its window may arrive in the next second on a busy machine, hence
    # one window of slack; at 10/s or unlimited, the last five arrive windows too early.
    first = int(arrivals[0])
    early = [
        (i, round(a - first, 2)) for i, a in enumerate(arrivals) if int(a) - first < i // 5 - 1
    ]
    assert not early, f"arrived before the limit allowed (index, seconds): {early}"


def test_a_broadcast_starts_sending_before_its_audience_is_planned(
    admin: httpx.Client, settings: Settings, db: Database, sink: tuple[Sink, str], tmp_path: Path
) -> None:
    receiver, url = sink
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, 3000)
    staged = Processes(
        settings.model_copy(update={"plan_chunk_size": 300, "plan_ahead": 1}), tmp_path
    )
    try:
        staged.worker(threads=1)
        response = admin.post(
            "/v1/notifications", json={"category": "promo.blast", "to": {"all": True}}
        )
        nid = response.json()["id"]
        wait_for(lambda: receiver.requests, timeout=60, every=0.01)
        with db.session() as session:
            notification = session.get(Notification, int(nid))
            assert notification is not None and notification.chunks_total == 10
            planned_at_first_message = notification.chunks_done
        view = wait_for(lambda: settled(admin, nid), timeout=120)
    finally:
        staged.stop_all()
    # Each chunk's messages go out before the next chunk is planned, not after all ten.
    assert planned_at_first_message <= 3
    assert view["counts"]["delivered"] == 3000
