"""Quiet hours in wall-clock time over every daylight-saving transition of a year.

The expected windows come from walking the clock in 15-minute steps with the standard
library alone: a window begins the first time the clock reaches its start and ends the
last time the clock shows its end, so both occurrences of a repeated time are inside,
and an end skipped by the clocks going forward is the first instant after the gap.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import permutations
from zoneinfo import ZoneInfo

import pytest

from engine.pipeline import policy
from preferences.model import Digest, QuietHours
from tests.engine.pipeline.test_policy import prefs

ZONES = (
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "America/Santiago",  # its clocks change at midnight
    "Australia/Lord_Howe",  # by half an hour
)
STEP = timedelta(minutes=15)


def transitions(zone: str, year: int = 2026) -> list[datetime]:
    """Every instant of `year` at which the zone's UTC offset changes (to the minute)."""
    tz = ZoneInfo(zone)
    out = []
    at = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    while at < end:
        later = at + timedelta(hours=1)
        if at.astimezone(tz).utcoffset() != later.astimezone(tz).utcoffset():
            edge = at
            while edge.astimezone(tz).utcoffset() == at.astimezone(tz).utcoffset():
                edge += timedelta(minutes=1)
            out.append(edge)
        at = later
    return out


def wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def expected_windows(
    start: time, end: time, tz: ZoneInfo, grid: list[datetime]
) -> list[tuple[datetime, datetime]]:
    """[begin, end) of every window whose start day lies inside the walked stretch."""
    walls = [wall(x, tz) for x in grid]
    days = sorted({w.date() for w in walls})[1:-2]
    out = []
    for day in days:
        begin_at = datetime.combine(day, start)
        end_day = day if end > start else day + timedelta(days=1)
        end_at = datetime.combine(end_day, end)
        begin = next(x for x, w in zip(grid, walls, strict=True) if w >= begin_at)
        last = max(x for x, w in zip(grid, walls, strict=True) if w < end_at)
        if begin <= last:
            out.append((begin, last + STEP))
    return out


def interesting_times(transition: datetime, tz: ZoneInfo) -> list[time]:
    """Times of day at, inside and around the skipped or repeated stretch, and the usual ones."""
    before = wall(transition - timedelta(seconds=1), tz) + timedelta(seconds=1)
    after = wall(transition, tz)
    low, high = min(before, after), max(before, after)
    moments = [low - timedelta(minutes=30), low, low + STEP, high, high + timedelta(minutes=30)]
    return sorted({m.time() for m in moments} | {time(22, 0), time(8, 0)})


CASES = [(zone, edge) for zone in ZONES for edge in transitions(zone)]


def test_the_zones_change_their_clocks_twice_a_year() -> None:
    assert {zone: len(transitions(zone)) for zone in ZONES} == dict.fromkeys(ZONES, 2)


@pytest.mark.parametrize(("zone", "edge"), CASES, ids=[f"{z}@{e:%m-%d}" for z, e in CASES])
def test_quiet_hours_follow_the_wall_clock_across_the_transition(zone: str, edge: datetime) -> None:
    tz = ZoneInfo(zone)
    grid = [edge - timedelta(hours=60) + i * STEP for i in range(int(120 / 0.25))]
    checked = [x for x in grid if abs(x - edge) <= timedelta(hours=14)]
    for start, end in permutations(interesting_times(edge, tz), 2):
        quiet = QuietHours(True, start, end, zone)
        windows = expected_windows(start, end, tz, grid)
        for x in checked:
            inside = [w_end for w_begin, w_end in windows if w_begin <= x < w_end]
            assert quiet.ends_at(x) == (inside[0] if inside else None), (start, end, x)
            # The rule in the recipient's terms: whenever the clock shows a time inside the
            # window — either occurrence of a repeated one — nothing interrupts.
            shown = wall(x, tz).time()
            within = start <= shown < end if start < end else shown >= start or shown < end
            if within:
                assert quiet.ends_at(x) is not None, (start, end, x)


def test_the_fall_back_and_spring_forward_examples() -> None:
    ny = "America/New_York"
    for start in (time(1, 0), time(23, 0)):
        quiet = QuietHours(True, start, time(1, 30), ny)
        # 06:15Z is the second 01:15 of 2026-11-01: still quiet, until the second 01:30.
        assert quiet.ends_at(datetime(2026, 11, 1, 6, 15, tzinfo=UTC)) == datetime(
            2026, 11, 1, 6, 30, tzinfo=UTC
        )
        assert quiet.ends_at(datetime(2026, 11, 1, 5, 20, tzinfo=UTC)) == datetime(
            2026, 11, 1, 6, 30, tzinfo=UTC
        )
    gap = QuietHours(True, time(1, 30), time(2, 30), ny)
    # 02:30 does not exist on 2026-03-08: the window ends when the clock jumps to 03:00.
    assert gap.ends_at(datetime(2026, 3, 8, 6, 45, tzinfo=UTC)) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )
    assert gap.ends_at(datetime(2026, 3, 8, 7, 10, tzinfo=UTC)) is None


def test_a_digest_hour_that_does_not_exist_comes_when_the_clock_jumps() -> None:
    chosen = prefs(
        quiet_hours=QuietHours(False, time(22, 0), time(8, 0), "America/New_York"),
        digest=Digest(enabled=True, at=time(2, 30)),
    )
    at = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST on the spring-forward day
    assert policy.next_local(chosen, time(2, 30), at) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    fall = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 00:00 EDT on the fall-back day
    assert policy.next_local(chosen, time(1, 15), fall) == datetime(
        2026, 11, 1, 5, 15, tzinfo=UTC
    )  # the first 01:15
    assert date(2026, 11, 1) == policy.next_local(chosen, time(1, 15), fall).date()
