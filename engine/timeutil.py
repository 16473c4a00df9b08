"""Durations (`"90m"`, `"3d"`, or seconds) and aware UTC datetimes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int) -> int:
    """Seconds in a duration given as `<n><s|m|h|d|w>` or as whole seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a string like '90m' or a number of seconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return value
    match = DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a duration like '90m', '1h' or '3d'")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact `<n><unit>` spelling of a number of seconds."""
    for unit in ("w", "d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """A datetime read back from SQL (naive on SQLite) as aware UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with offset, or None."""
    stamp = aware(value)
    return stamp.isoformat() if stamp else None
