"""Local wall-clock times as instants, on the days a time zone skips or repeats an hour.

Quiet hours, digest times and the recipient's calendar (local midnight, local Monday)
are written in wall-clock time. On a daylight-saving day a wall-clock time may occur
twice (the repeated hour when clocks go back) or not at all (the gap when they go
forward); these functions say which instant is meant:

- `earliest`: the first instant the clock shows the time — a window's beginning, a
  digest's hour, midnight;
- `until`: the instant after which the clock never again shows an earlier time — a
  window's end, so that both occurrences of a repeated time are inside the window (a
  window ending at 01:30 on the day 01:00–02:00 repeats ends at the second 01:30; one
  ending at 01:00 ends at the first, as nothing in it is repeated).

A time that does not exist that day stands for the first instant after the gap (the
moment the clock jumps past it), for both.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@functools.lru_cache(maxsize=4096)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (raises `ZoneInfoNotFoundError` for an unknown one)."""
    return ZoneInfo(name)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


@functools.lru_cache(maxsize=8192)
def _occurrences(day: date, at: time, zone_name: str) -> tuple[datetime, datetime]:
    """(first instant the clock in `zone_name` shows `at` on `day`, instant after which it
    never shows an earlier time), in UTC; both are the end of the gap when it never does."""
    tz = zone(zone_name)
    naive = datetime.combine(day, at)
    candidates = sorted({naive.replace(tzinfo=tz, fold=fold).astimezone(UTC) for fold in (0, 1)})
    real = [c for c in candidates if _wall(c, tz) == naive]
    if real:
        second = timedelta(seconds=1)
        return real[0], max(c for c in real if _wall(c - second, tz) < naive)
    # In the gap: the two readings straddle the transition; find its second by bisection.
    lo, hi = int(candidates[0].timestamp()), int(candidates[-1].timestamp()) + 1
    while hi - lo > 1:  # invariant: the clock shows an earlier time at lo, a later one at hi
        middle = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) > naive:
            hi = middle
        else:
            lo = middle
    after = datetime.fromtimestamp(hi, UTC)
    return after, after


def earliest(day: date, at: time, zone_name: str) -> datetime:
    """The first instant (UTC) it is `at` on `day` in the zone, or the end of its gap."""
    return _occurrences(day, at, zone_name)[0]


def until(day: date, at: time, zone_name: str) -> datetime:
    """The instant (UTC) after which the clock in the zone never again shows a time before
    `at` on `day`: the end of a window running to `at`."""
    return _occurrences(day, at, zone_name)[1]


def local_date(instant: datetime, zone_name: str) -> date:
    """The calendar date in the zone at `instant`."""
    return instant.astimezone(zone(zone_name)).date()
