"""The best local hour over generated engagement histories (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from engine.pipeline import besttime

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
ZONES = st.sampled_from(["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"])


@given(
    zone=ZONES,
    hour=st.integers(min_value=0, max_value=23),
    habit=st.integers(min_value=3, max_value=12),
    noise=st.lists(st.integers(min_value=0, max_value=23), max_size=2),
)
def test_a_habit_wins_over_a_few_stray_events(
    zone: str, hour: int, habit: int, noise: list[int]
) -> None:
    local = NOW.astimezone(ZoneInfo(zone))
    events = [
        (local - timedelta(days=d + 1)).replace(hour=hour, minute=10).astimezone(UTC)
        for d in range(habit)
    ]
    events += [
        (local - timedelta(days=d + 1)).replace(hour=h, minute=5).astimezone(UTC)
        for d, h in enumerate(noise)
    ]
    assert besttime.best_hour(besttime.weights(events, zone, NOW)) == hour


@given(zone=ZONES, old=st.integers(0, 23), new=st.integers(0, 23))
def test_recent_habits_outweigh_old_ones(zone: str, old: int, new: int) -> None:
    local = NOW.astimezone(ZoneInfo(zone))
    events = [(local - timedelta(days=90 + d)).replace(hour=old).astimezone(UTC) for d in range(5)]
    events += [(local - timedelta(days=1 + d)).replace(hour=new).astimezone(UTC) for d in range(4)]
    assert besttime.best_hour(besttime.weights(events, zone, NOW)) == new


def test_too_little_history_is_no_answer() -> None:
    assert besttime.best_hour(besttime.weights([NOW - timedelta(days=1)], "UTC", NOW)) is None


@given(
    zone=ZONES,
    hour=st.integers(0, 23),
    minutes=st.integers(0, 60 * 24 * 3),
    latest_in=st.none() | st.integers(-3600, 3 * 86400),
)
def test_due_is_the_next_start_of_that_local_hour_and_never_past_the_latest(
    zone: str, hour: int, minutes: int, latest_in: int | None
) -> None:
    at = NOW + timedelta(minutes=minutes)
    latest = at + timedelta(seconds=latest_in) if latest_in is not None else None
    due = besttime.due_at(hour, zone, at, latest)
    if due is None:  # now: it is that hour, or the latest time has passed
        assert besttime.local_hour(at, zone) == hour or (latest is not None and latest <= at)
        return
    assert at < due <= at + timedelta(hours=25)
    if latest is not None and due == latest:
        return
    assert latest is None or due <= latest
    assert due.astimezone(ZoneInfo(zone)).hour == hour
    assert due.astimezone(ZoneInfo(zone)).minute == 0
