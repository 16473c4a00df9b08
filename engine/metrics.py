"""Prometheus metrics: what was accepted, delivered and suppressed, and how fast.

Workers run in Prometheus multiprocess mode (`tidings worker` sets the directory), so
every process's counts add up on the worker's exposition port; the API serves its own
plus queue depths and dead letters read from the broker at scrape time.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from engine.store.states import DeliveryStatus

NOTIFICATIONS = Counter(
    "tidings_notifications_accepted_total", "Notifications accepted by the API", ["queue"]
)
DELIVERIES = Counter(
    "tidings_deliveries_total", "Delivery outcomes by channel and status", ["channel", "status"]
)
SUPPRESSED = Counter(
    "tidings_suppressed_total", "Deliveries suppressed, by reason", ["channel", "reason"]
)
LATENCY = Histogram(
    "tidings_enqueue_to_sent_seconds",
    "From the notification's acceptance to its delivery being sent or stored",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)


def outcomes(rows: Iterable[tuple[str, str, str | None]]) -> None:
    """Count (channel, status, reason) outcomes, one increment per distinct label set."""
    tally = Tally(rows)
    for (channel, status, reason), count in tally.items():
        DELIVERIES.labels(channel, status).inc(count)
        if status == DeliveryStatus.SUPPRESSED and reason:
            SUPPRESSED.labels(channel, reason).inc(count)


def latency(channel: str, accepted_at: datetime, done_at: datetime) -> None:
    LATENCY.labels(channel).observe(max((done_at - accepted_at).total_seconds(), 0.0))


def latencies(channel: str, accepted: Iterable[datetime], done_at: datetime) -> None:
    """`latency` for many deliveries of one channel sent at `done_at`."""
    observe = LATENCY.labels(channel).observe
    for accepted_at in accepted:
        observe(max((done_at - accepted_at).total_seconds(), 0.0))


class QueueCollector(Collector):
    """Queue depth, delayed messages and dead letters per queue, read from the broker
    at scrape."""

    def __init__(self, read: Callable[[], dict[str, dict[str, int | None]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from engine.ops.status import BROKER_ERRORS

        waiting = GaugeMetricFamily("tidings_queue_depth", "Messages waiting", labels=["queue"])
        delayed = GaugeMetricFamily("tidings_queue_delayed", "Delayed messages", labels=["queue"])
        dead = GaugeMetricFamily("tidings_dead_letters", "Dead-lettered messages", labels=["queue"])
        flight = GaugeMetricFamily(
            "tidings_in_flight", "Messages being worked on", labels=["queue"]
        )
        try:
            state = self.read()
        except BROKER_ERRORS:
            return
        for queue, numbers in state.items():
            for family, name in (
                (waiting, "waiting"),
                (delayed, "delayed"),
                (dead, "dead"),
                (flight, "in_flight"),
            ):
                value = numbers[name]
                if value is not None:
                    family.add_metric([queue], value)
        yield from (waiting, delayed, dead, flight)
