"""Figures per group and per hour or day agree with the deliveries they count."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete

from engine.ops import stats
from engine.store.db import Database
from engine.store.models import Delivery, Feedback, Notification

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
START = datetime(2026, 11, 20, tzinfo=UTC)
STATUSES = (
    "queued",
    "sent",
    "delivered",
    "opened",
    "read",
    "clicked",
    "converted",
    "failed",
    "suppressed",
    "scheduled",
)
REASONS = ("capped", "opted_out", "quiet_hours", "cancelled")

deliveries = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 24 * 60 - 1),  # minutes after START
        st.sampled_from(STATUSES),
        st.sampled_from(REASONS),
        st.sampled_from(("promo.flash_sale", "order.delivered")),
        st.sampled_from((1, 2, None)),  # campaign
    ),
    max_size=40,
)


def _store(db: Database, rows: list[tuple[int, str, str, str, int | None]]) -> None:
    with db.session() as session:
        for table in (Feedback, Delivery, Notification):
            session.execute(delete(table))
        session.flush()
        for n, (minutes, status, reason, category, campaign) in enumerate(rows, start=1):
            session.add(
                Notification(id=n, category=category, audience={"ids": ["r"]}, campaign_id=campaign)
            )
            session.add(
                Delivery(
                    notification_id=n,
                    recipient_id=f"r-{n}",
                    channel="email",
                    category=category,
                    status=status,
                    reason=reason if status == "suppressed" else None,
                    created_at=START + timedelta(minutes=minutes),
                )
            )


@BOTH
@hypothesis_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=deliveries,
    bucket=st.sampled_from(("hour", "day")),
    window=st.tuples(st.integers(0, 4000), st.integers(1, 4000)),
)
def test_buckets_and_groups_count_every_delivery_in_the_range_once(
    db: Database,
    rows: list[tuple[int, str, str, str, int | None]],
    bucket: stats.Bucket,
    window: tuple[int, int],
) -> None:
    _store(db, rows)
    since = START + timedelta(minutes=window[0] - 200)
    until = since + timedelta(minutes=window[1])
    inside = [r for r in rows if since <= START + timedelta(minutes=r[0]) < until]
    by_status = Counter(r[1] for r in inside)
    with db.session() as session:
        series = stats.series(session, since=since, until=until, bucket=bucket)
        groups = {
            by: stats.rates(session, by=by, since=since, until=until)
            for by in ("category", "campaign")
        }
    starts = [b["start"] for b in series]
    step = stats.BUCKETS[bucket]
    assert starts[0] <= since < starts[0] + step and starts[-1] < until <= starts[-1] + step
    assert all(b - a == step for a, b in pairwise(starts))
    for row in rows:  # each delivery in the range lands in the bucket holding its moment
        at = START + timedelta(minutes=row[0])
        if since <= at < until:
            assert stats.floor(at, bucket) in starts
    opened = sum(by_status[s] for s in ("opened", "read", "clicked", "converted"))
    clicked = by_status["clicked"] + by_status["converted"]
    delivered = by_status["delivered"] + opened
    sent = by_status["sent"] + delivered
    assert sum(b["sent"] for b in series) == sent
    assert sum(b["delivered"] for b in series) == delivered
    assert sum(b["failed"] for b in series) == by_status["failed"]
    assert sum(b["suppressed"] for b in series) == by_status["suppressed"]
    for by, found in groups.items():
        assert sum(g["deliveries"] for g in found) == len(inside)
        assert sum(g["sent"] for g in found) == sent
        assert sum(g["delivered"] for g in found) == delivered
        assert sum(g["opened"] for g in found) == opened
        assert sum(g["clicked"] for g in found) == clicked
        assert sum(g["converted"] for g in found) == by_status["converted"]
        assert sum(g["failed"] for g in found) == by_status["failed"]
        assert sum(g["scheduled"] for g in found) == by_status["scheduled"]
        for g in found:
            assert g["converted"] <= g["clicked"] <= g["opened"] <= g["delivered"] <= g["sent"]
        reasons = Counter(r[2] for r in inside if r[1] == "suppressed")
        merged: Counter[str] = Counter()
        for g in found:
            merged.update(g["suppressed_by_reason"])
            assert sum(g["suppressed_by_reason"].values()) == g["suppressed"]
        assert merged == reasons, by
    campaigns = {g["campaign"] for g in groups["campaign"]}
    assert campaigns == {None if r[4] is None else str(r[4]) for r in inside}


def test_a_range_of_more_than_a_thousand_buckets_is_refused(db: Database) -> None:
    with db.session() as session, pytest.raises(ValueError, match="1000 hours"):
        stats.series(session, since=START, until=START + timedelta(days=50), bucket="hour")


@given(
    counts=st.dictionaries(
        st.sampled_from((*STATUSES, "sending")), st.integers(0, 10_000), max_size=12
    )
)
def test_a_notifications_funnel_narrows_and_its_figures_account_for_every_delivery(
    counts: dict[str, int],
) -> None:
    shown = stats.figures(counts)
    assert shown["deliveries"] == sum(counts.values())
    steps = [shown[k] for k in stats.FUNNEL]
    assert steps == sorted(steps, reverse=True)  # each step keeps only who went on
    settled = shown["sent"] + shown["pending"] + shown["suppressed"] + shown["failed"]
    assert settled == shown["deliveries"]
