"""What every document of the management API shares: the `Strict` request base (unknown
fields are a 422 naming the field), the `Query` base of query parameters, the `Out` answer
base, and the validators and types the areas build on (row ids, storable JSON, durations,
time zones, locales, caps)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import Ge, Le
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
)

from channels.base import CHANNEL_NAMES
from engine.errors import FieldError
from engine.timeutil import iso, parse_duration
from preferences.model import WEEKDAYS, parse_hhmm

KINDS = ("transactional", "service", "promotional", "social")


PRIORITIES = ("critical", "high", "normal", "low")


TEMPLATE_FIELDS = ("title", "body", "subject", "text", "html", "action_url")


DIGEST_FIELDS = ("title", "body", "html")


LOCALE = r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$"


EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


PHONE = re.compile(r"^\+[1-9]\d{6,14}$")


# Durations are stored in 32-bit SQL integers.
MAX_DURATION = 2**31 - 1


# Row ids and cursors in URLs: ASCII digits only (`str.isdigit()` also passes '²', which
# `int()` refuses), and at most 18 of them, so every one fits a signed 64-bit SQL integer.
ID_PATTERN = r"^[0-9]{1,18}$"


_ID = re.compile(ID_PATTERN)


# `data` is stored as JSON and handed to templates and webhooks inside other documents.
MAX_DATA_DEPTH = 32


# Beyond this, the JSON codec that stores documents refuses them.
MAX_BODY_DEPTH = 250


INT64 = (-(2**63), 2**63 - 1)


# Template sources; the largest field (html) is itself capped at 200,000 characters.
MAX_TEMPLATE_CHARS = 200_000


def row_id(raw: str | None) -> int | None:
    """A row id or cursor as given in a URL, or None when it is not one.

    The one parser for ids from paths, query strings and forms: 1 to 18 ASCII digits.
    """
    if raw is None or not _ID.fullmatch(raw):
        return None
    return int(raw)


def json_problem(value: Any, *, max_depth: int, path: str = "") -> tuple[str, str] | None:
    """Where a parsed JSON value cannot be stored as it is, and why: `(dotted path, reason)`.

    Refused: NUL characters (PostgreSQL text refuses them), lone surrogates (not UTF-8),
    integers outside signed 64 bits, numbers no double holds, and nesting deeper than
    `max_depth`.
    """
    pending: list[tuple[str, Any, int]] = [(path, value, 0)]
    while pending:
        where, item, depth = pending.pop()
        if isinstance(item, str):
            if reason := _text_problem(item):
                return where or "body", reason
        elif isinstance(item, int) and not isinstance(item, bool):
            if not INT64[0] <= item <= INT64[1]:
                return where or "body", "integers are limited to signed 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return where or "body", "numbers are limited to 64-bit floating point"
        elif isinstance(item, dict | list):
            if depth >= max_depth:  # named by its outermost field, not a path of `max_depth`
                outer = path or where.split(".", 1)[0] or "body"
                return outer, f"nested more than {max_depth} levels deep"
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                here = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and (reason := _text_problem(key)):
                    return here, f"a key: {reason}"
                pending.append((here, child, depth + 1))
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "text cannot contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text cannot contain lone surrogates (\\ud800-\\udfff)"
    return None


def _storable_data(value: dict[str, Any]) -> dict[str, Any]:
    if problem := json_problem(value, max_depth=MAX_DATA_DEPTH, path="data"):
        raise FieldError(*problem)
    return value


def _duration(value: Any) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("a duration is a string like '90m' or a number of seconds")
    return parse_duration(value)


def _positive(value: int) -> int:
    if value <= 0:
        raise ValueError("must be longer than zero")
    if value > MAX_DURATION:
        raise ValueError("must be shorter than 68 years")
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder such as 'America'
        raise ValueError(f"{value!r} is not an IANA time zone like 'Asia/Shanghai'") from None
    return value


ISO_DATETIME = "an ISO 8601 date and time with its offset, like 2026-12-01T20:00:00+08:00"


def _iso(value: Any) -> Any:
    """Only ISO 8601 text (or a `datetime` handed over in code) is a time: pydantic would
    also read a number, or text of digits, as seconds since 1970."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError(ISO_DATETIME)
    return value


def _utc(value: datetime) -> datetime:
    # SQLite keeps a timestamp's wall time and drops its offset: store UTC only.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the timestamp is out of range") from None


def _hhmm(value: str) -> str:
    parse_hhmm(value)
    return value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists each entry once")
    return values


Duration = Annotated[int, BeforeValidator(_duration), AfterValidator(_positive)]


ChannelName = Literal["inapp", "email", "push", "sms", "webhook", "log"]


# The channels a recipient switches on and off (the log channel is the platform's own).
UserChannelName = Literal["inapp", "email", "push", "sms", "webhook"]


TimeZone = Annotated[str, AfterValidator(_timezone)]


UtcDatetime = Annotated[AwareDatetime, BeforeValidator(_iso), AfterValidator(_utc)]


TimeOfDay = Annotated[str, AfterValidator(_hhmm)]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


Locale = Annotated[str, Field(pattern=LOCALE, max_length=16)]


Key = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


assert set(get_args(ChannelName)) == set(CHANNEL_NAMES)


assert set(get_args(UserChannelName)) == set(CHANNEL_NAMES) - {"log"}


assert set(get_args(Weekday)) == set(WEEKDAYS)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CapIn(Strict):
    """At most `count` per `per`."""

    count: StrictInt = Field(ge=1, le=1_000_000)
    per: Duration


RowId = Annotated[str, Field(pattern=ID_PATTERN, examples=["42"])]


def _ascii_number(value: Any) -> Any:
    """Query numbers as ASCII digits only (`int()` also takes '+5', ' 5' and '٣')."""
    if isinstance(value, str):
        parsed = row_id(value)
        if parsed is None:
            raise ValueError("a whole number in ASCII digits")
        return parsed
    return value


Limit = Annotated[int, Ge(1), Le(1000), BeforeValidator(_ascii_number)]


class Query(BaseModel):
    """Query parameters: unknown ones are ignored, as browsers and proxies add their own."""

    model_config = ConfigDict(extra="ignore")


def _stamp(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _id_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# An answer reads the domain's values as they are (an aware or naive UTC `datetime`, an
# integer row id) and writes the API's text for them (ISO 8601 with offset, digits).
Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}), BeforeValidator(_stamp)
]


IdText = Annotated[str, Field(pattern=ID_PATTERN), BeforeValidator(_id_text)]


class Out(BaseModel):
    """An answer document: exactly these fields, or the answer is a 500 (a bug)."""

    model_config = ConfigDict(extra="forbid")
