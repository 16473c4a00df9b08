"""Send-time optimisation (`send_at: "best"`): the local hour each recipient most often
opens, reads or clicks, learned from their own events. Pure functions.

Each engagement counts for the local hour (in the recipient's time zone) it happened in,
weighted by its recency: an event `HALF_LIFE_DAYS` old counts half as much as one now, so
a recipient whose habits change is followed within weeks. With less than
`MIN_WEIGHT` of history a recipient gets the category's best hour, else everyone's, else
`DEFAULT_HOUR`, the playbook's evening.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from preferences import wallclock

HALF_LIFE_DAYS = 14.0
# About three recent engagements: fewer say little about a habit.
MIN_WEIGHT = 2.5
DEFAULT_HOUR = 20
# Events older than this are not read at all.
HISTORY = timedelta(days=120)


def local_hour(at: datetime, zone: str) -> int:
    """The hour of the day (0–23) it was at `at` in `zone`."""
    return at.astimezone(ZoneInfo(zone)).hour


def weights(events: Iterable[datetime], zone: str, now: datetime) -> list[float]:
    """Recency-weighted engagement per local hour (24 entries) from event times."""
    by_hour = [0.0] * 24
    for at in events:
        age_days = max(0.0, (now - at).total_seconds() / 86400)
        by_hour[local_hour(at, zone)] += 0.5 ** (age_days / HALF_LIFE_DAYS)
    return by_hour


def best_hour(by_hour: list[float]) -> int | None:
    """The hour with the most weight, or None with too little history (ties: the earliest)."""
    if sum(by_hour) < MIN_WEIGHT:
        return None
    return max(range(24), key=lambda hour: (by_hour[hour], -hour))


def due_at(hour: int, zone: str, at: datetime, latest: datetime | None = None) -> datetime | None:
    """When to send for `hour` (local, in `zone`) seen from `at`: None (now) when it is that
    hour now, else the next time it starts; never past `latest` (then at `latest`, or now
    when `latest` has passed)."""
    if local_hour(at, zone) == hour:
        return None
    day = wallclock.local_date(at, zone)
    due = wallclock.earliest(day, time(hour), zone)
    while due <= at:
        day += timedelta(days=1)
        due = wallclock.earliest(day, time(hour), zone)
    due = due.astimezone(at.tzinfo)
    if latest is not None and due > latest:
        return latest if latest > at else None
    return due
