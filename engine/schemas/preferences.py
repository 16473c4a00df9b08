"""Request documents of a recipient's preferences (`PUT /v1/recipients/{id}/preferences`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, StrictBool

from engine.schemas.common import (
    CapIn,
    ChannelName,
    Strict,
    TimeOfDay,
    TimeZone,
    UserChannelName,
    UtcDatetime,
    Weekday,
    _unique,
)


class QuietHoursIn(Strict):
    enabled: StrictBool | None = None
    start: TimeOfDay | None = None
    end: TimeOfDay | None = None
    timezone: TimeZone | None = None
    days: Annotated[list[Weekday], AfterValidator(_unique)] | None = None


class DigestIn(Strict):
    enabled: StrictBool | None = None
    at: TimeOfDay | None = None


class CategoryPreferenceIn(Strict):
    enabled: StrictBool | None = None
    channels: dict[ChannelName, StrictBool] | None = None
    caps: list[CapIn] | None = Field(default=None, max_length=10)


class PreferencesIn(Strict):
    """`PUT /v1/recipients/{id}/preferences`; keys left out keep their value, a null puts
    one back to the platform default. What is written reads back as written."""

    channels: dict[UserChannelName, StrictBool] | None = None
    categories: dict[str, CategoryPreferenceIn] | None = None
    caps: list[CapIn] | None = Field(default=None, max_length=10)
    quiet_hours: QuietHoursIn | None = None
    paused_until: UtcDatetime | None = None
    digest: DigestIn | None = None
    unsubscribed: StrictBool | None = None
