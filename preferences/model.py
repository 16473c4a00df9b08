"""Effective preferences: what a recipient chose, with every default resolved.

Plain frozen values and pure functions; the store builds them from SQL and the
planner asks them questions.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

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

    def _window_around(self, local: datetime) -> tuple[datetime, datetime] | None:
        """The quiet window containing `local`, if any; it may have begun the day before."""
        for offset in (0, -1):
            day = local.date() + timedelta(days=offset)
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            begin = datetime.combine(day, self.start, local.tzinfo)
            end_day = day if self.end > self.start else day + timedelta(days=1)
            end = datetime.combine(end_day, self.end, local.tzinfo)
            if begin <= local < end:
                return begin, end
        return None

    def ends_at(self, at: datetime) -> datetime | None:
        """When the quiet window around `at` ends (UTC), or None if `at` is not quiet."""
        if not self.enabled or self.start == self.end:
            return None
        local = at.astimezone(ZoneInfo(self.timezone))
        window = self._window_around(local)
        if window is None:
            return None
        # Re-resolve the wall-clock end in the zone so DST shifts land on the right instant.
        end = window[1].replace(tzinfo=None).replace(tzinfo=ZoneInfo(self.timezone))
        return end.astimezone(UTC)


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
