"""Effective preferences: what a recipient chose, with every default resolved.

Plain frozen values and pure functions; the store builds them from SQL and the
planner asks them questions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from preferences import wallclock

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Cap:
    """At most `count` notifications per `per` seconds."""

    count: int
    per: int


@dataclass(frozen=True)
class QuietHours:
    """A daily window, in the recipient's own time zone, when nothing interrupts."""

    enabled: bool
    start: time
    end: time
    timezone: str
    days: frozenset[str] = frozenset(WEEKDAYS)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The quiet window beginning on local `day`, as UTC instants [begin, end), or None.

        Defined in wall-clock time: it begins the first time the clock shows `start` and
        ends once the clock no longer shows a time before `end`, so both occurrences of a
        repeated time (clocks going back) are inside; a time skipped that day (clocks
        going forward) stands for the first instant after the gap.
        """
        if not self.enabled or self.start == self.end or WEEKDAYS[day.weekday()] not in self.days:
            return None
        begin = wallclock.earliest(day, self.start, self.timezone)
        end_day = day if self.end > self.start else day + timedelta(days=1)
        end = wallclock.until(end_day, self.end, self.timezone)
        return (begin, end) if begin < end else None

    def ends_at(self, at: datetime) -> datetime | None:
        """When the quiet window around `at` ends (UTC), or None if `at` is not quiet."""
        if not self.enabled or self.start == self.end:
            return None
        today = wallclock.local_date(at, self.timezone)
        for offset in (-1, 0):
            window = self.window(today + timedelta(days=offset))
            if window is not None and window[0] <= at < window[1]:
                return window[1]
        return None


@dataclass(frozen=True)
class CategoryPreference:
    """A recipient's choices for one category."""

    enabled: bool = True
    channels: Mapping[str, bool] = field(default_factory=dict)
    caps: tuple[Cap, ...] = ()


@dataclass(frozen=True)
class Digest:
    """Hold `low` notifications and send one digest at a local time of day."""

    enabled: bool
    at: time


@dataclass(frozen=True)
class EffectivePreferences:
    """Everything the planner needs to know about one recipient's wishes."""

    recipient_id: str
    channels: Mapping[str, bool]
    categories: Mapping[str, CategoryPreference]
    caps: tuple[Cap, ...]
    quiet_hours: QuietHours
    paused_until: datetime | None
    digest: Digest
    unsubscribed: bool

    def category(self, key: str) -> CategoryPreference:
        return self.categories.get(key, CategoryPreference())

    def opted_in(self, category: str, channel: str, *, required: bool) -> bool:
        """Whether this recipient takes `category` on `channel`; required categories always do."""
        if required:
            return True
        if self.unsubscribed or not self.channels.get(channel, True):
            return False
        choice = self.category(category)
        return choice.enabled and choice.channels.get(channel, True)

    def paused_at(self, at: datetime) -> datetime | None:
        """When the pause in force at `at` ends, or None."""
        if self.paused_until is not None and at < self.paused_until:
            return self.paused_until
        return None


@functools.lru_cache(maxsize=2048)
def parse_hhmm(value: str) -> time:
    """A local time of day written `HH:MM` (00:00–23:59); a million recipients share a few."""
    try:
        hours, minutes = value.split(":")
        if len(hours) != 2 or len(minutes) != 2:
            raise ValueError
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day like '22:00'") from None
