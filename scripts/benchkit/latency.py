"""Latency under load: transactional notifications at a steady rate while a broadcast runs,
measured from the receipts in SQL."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlmodel import col

from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent, Notification
from engine.timeutil import aware
from scripts.benchkit.client import Api, percentile, wait_until


class Prober(threading.Thread):
    """Sends a notification of `category` to one recipient every `every` seconds.

    Open loop: each request leaves on schedule from a small pool, whether or not the
    previous one was answered, so a stalled API shows up in the figures instead of
    quietly lowering the rate.
    """

    def __init__(self, api: Api, category: str, recipient: str, every: float = 0.1) -> None:
        super().__init__(name="bench-prober", daemon=True)
        self.api = api
        self.category = category
        self.recipient = recipient
        self.every = every
        # notification id -> when its request was due to leave (epoch seconds)
        self.due: dict[int, float] = {}
        self.accept_ms: list[float] = []
        self.errors: Counter[str] = Counter()
        self.late = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="bench-probe")

    def _send(self, sequence: int, due: float) -> None:
        body = {"category": self.category, "to": [self.recipient], "data": {"order": str(sequence)}}
        started = time.monotonic()
        try:
            status, answer = self.api.call("POST", "/v1/notifications", body)
        except OSError as exc:
            with self._lock:
                self.errors[type(exc).__name__] += 1
            return
        with self._lock:
            if status == 202:
                self.due[int(answer["id"])] = due
                self.accept_ms.append((time.monotonic() - started) * 1000)
            else:
                self.errors[f"HTTP {status}"] += 1

    def run(self) -> None:
        next_at = time.monotonic()
        sequence = 0
        while not self._halt.is_set():
            sequence += 1
            self._pool.submit(self._send, sequence, time.time())
            next_at += self.every
            if next_at < time.monotonic():  # this thread itself fell behind
                self.late += 1
                next_at = time.monotonic()
            self._halt.wait(next_at - time.monotonic())

    def finish(self) -> None:
        """Stop sending and wait for the answers still outstanding."""
        self._halt.set()
        if self.is_alive():
            self.join(10)
        self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop sending; requests still outstanding are left to their fate."""
        self._halt.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def latency(db: Database, prober: Prober) -> dict[str, Any]:
    """Per probe, in ms: accept (the notification's `created_at`) to its `delivered` event,
    and the moment its request was due to leave to that same event."""
    ids = list(prober.due)

    def delivered() -> dict[int, tuple[datetime, datetime]]:
        with db.session() as session:
            rows = session.execute(
                select(
                    col(Notification.id), col(Notification.created_at), func.min(DeliveryEvent.at)
                )
                .join(Delivery, col(Delivery.notification_id) == col(Notification.id))
                .join(
                    DeliveryEvent,
                    and_(
                        col(DeliveryEvent.delivery_id) == col(Delivery.id),
                        col(DeliveryEvent.status) == "delivered",
                    ),
                )
                .where(col(Notification.id).in_(ids))
                .group_by(col(Notification.id), col(Notification.created_at))
            ).all()
        out = {}
        for nid, created, at in rows:
            created_at, delivered_at = aware(created), aware(at)
            assert created_at and delivered_at
            out[nid] = (created_at, delivered_at)
        return out

    try:
        found = wait_until(
            lambda: d if len(d := delivered()) >= len(ids) else None,
            timeout=30,
            every=0.5,
            what="the last transactional notifications",
        )
    except TimeoutError:
        found = delivered()
    accepted = [(at - created).total_seconds() * 1000 for created, at in found.values()]
    requested = [(at.timestamp() - prober.due[nid]) * 1000 for nid, (_, at) in found.items()]

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "sent": len(ids),
        "delivered": len(found),
        "every_ms": round(prober.every * 1000),
        "p50_ms": ms(percentile(accepted, 50)),
        "p90_ms": ms(percentile(accepted, 90)),
        "p99_ms": ms(percentile(accepted, 99)),
        "max_ms": ms(max(accepted, default=None)),
        "from_request_p50_ms": ms(percentile(requested, 50)),
        "from_request_p99_ms": ms(percentile(requested, 99)),
        "api_accept_p50_ms": ms(percentile(prober.accept_ms, 50)),
        "api_accept_p99_ms": ms(percentile(prober.accept_ms, 99)),
        "stages_p50_ms": stages(db, ids),
        "errors": dict(prober.errors),
        "late_sends": prober.late,
    }


def stages(db: Database, ids: list[int]) -> dict[str, float]:
    """Median ms from accept to each receipt event of the probes: where the time goes."""
    with db.session() as session:
        rows = session.execute(
            select(col(Notification.created_at), col(DeliveryEvent.status), col(DeliveryEvent.at))
            .join(Delivery, col(Delivery.notification_id) == col(Notification.id))
            .join(DeliveryEvent, col(DeliveryEvent.delivery_id) == col(Delivery.id))
            .where(col(Notification.id).in_(ids))
        ).all()
    by_status: dict[str, list[float]] = {}
    for created, status, at in rows:
        elapsed = (aware(at) - aware(created)).total_seconds() * 1000  # type: ignore[operator]
        by_status.setdefault(status, []).append(elapsed)
    medians = {status: statistics.median(values) for status, values in by_status.items()}
    in_order = sorted(medians.items(), key=lambda item: item[1])
    return {status: round(median, 1) for status, median in in_order}
