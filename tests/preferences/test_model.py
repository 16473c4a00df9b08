"""Effective preferences as pure values: quiet hours in the recipient's zone, and opt-ins."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from preferences.model import (
    WEEKDAYS,
    Cap,
    CategoryPreference,
    Digest,
    EffectivePreferences,
    QuietHours,
    parse_hhmm,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
NIGHTS = QuietHours(enabled=True, start=time(22), end=time(8), timezone="Asia/Shanghai")


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_late_evening_is_quiet_until_eight_next_morning_local() -> None:
    ends = NIGHTS.ends_at(local(SHANGHAI, 2026, 11, 20, 23, 0))
    assert ends == local(SHANGHAI, 2026, 11, 21, 8, 0)
    assert ends == utc(2026, 11, 21, 0, 0)
    assert ends is not None and ends.utcoffset() == UTC.utcoffset(None)


def test_the_instant_is_read_in_the_recipients_zone_not_utc() -> None:
    # 15:00 UTC is 23:00 in Shanghai: quiet, although it is mid-afternoon in UTC.
    assert NIGHTS.ends_at(utc(2026, 11, 20, 15, 0)) == utc(2026, 11, 21, 0, 0)
    # 03:00 UTC is 11:00 in Shanghai: not quiet, although it is the middle of the night in UTC.
    assert NIGHTS.ends_at(utc(2026, 11, 20, 3, 0)) is None


@pytest.mark.parametrize(
    ("hour", "minute", "quiet"),
    [(21, 59, False), (22, 0, True), (0, 0, True), (7, 59, True), (8, 0, False), (12, 0, False)],
)
def test_window_edges(hour: int, minute: int, quiet: bool) -> None:
    at = local(SHANGHAI, 2026, 11, 18, hour, minute)
    ends = NIGHTS.ends_at(at)
    if not quiet:
        assert ends is None
    else:
        day = 19 if hour >= 22 else 18
        assert ends == local(SHANGHAI, 2026, 11, day, 8, 0)


def test_early_morning_belongs_to_the_window_that_began_the_evening_before() -> None:
    assert NIGHTS.ends_at(local(SHANGHAI, 2026, 11, 21, 7, 59)) == local(
        SHANGHAI, 2026, 11, 21, 8, 0
    )


def test_days_are_the_evenings_the_window_begins_on() -> None:
    weeknights = QuietHours(
        enabled=True,
        start=time(22),
        end=time(8),
        timezone="Asia/Shanghai",
        days=frozenset({"mon", "tue", "wed", "thu", "fri"}),
    )
    # Friday night is quiet through Saturday 08:00.
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 20, 23, 0)) == local(
        SHANGHAI, 2026, 11, 21, 8, 0
    )
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 21, 7, 0)) == local(
        SHANGHAI, 2026, 11, 21, 8, 0
    )
    # Saturday night is not quiet, nor the small hours of Sunday or of Monday.
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 21, 23, 0)) is None
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 22, 7, 0)) is None
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 23, 7, 0)) is None
    # Monday night is quiet again.
    assert weeknights.ends_at(local(SHANGHAI, 2026, 11, 23, 22, 30)) == local(
        SHANGHAI, 2026, 11, 24, 8, 0
    )


def test_a_window_inside_one_day() -> None:
    siesta = QuietHours(enabled=True, start=time(13), end=time(14), timezone="Asia/Shanghai")
    assert siesta.ends_at(local(SHANGHAI, 2026, 11, 20, 13, 0)) == local(
        SHANGHAI, 2026, 11, 20, 14, 0
    )
    assert siesta.ends_at(local(SHANGHAI, 2026, 11, 20, 13, 59)) == local(
        SHANGHAI, 2026, 11, 20, 14, 0
    )
    for hour, minute in [(12, 59), (14, 0), (23, 0), (1, 0)]:
        assert siesta.ends_at(local(SHANGHAI, 2026, 11, 20, hour, minute)) is None


def test_switched_off_or_empty_windows_are_never_quiet() -> None:
    at = local(SHANGHAI, 2026, 11, 20, 23, 0)
    off = QuietHours(enabled=False, start=time(22), end=time(8), timezone="Asia/Shanghai")
    empty = QuietHours(enabled=True, start=time(22), end=time(22), timezone="Asia/Shanghai")
    no_days = QuietHours(
        enabled=True, start=time(22), end=time(8), timezone="Asia/Shanghai", days=frozenset()
    )
    assert off.ends_at(at) is None
    assert empty.ends_at(at) is None
    assert no_days.ends_at(at) is None


def test_new_york_spring_forward_ends_at_eight_daylight_time() -> None:
    nights = QuietHours(enabled=True, start=time(22), end=time(8), timezone="America/New_York")
    # 23:00 EST on Saturday 7 March 2026; clocks jump 02:00 → 03:00 that night.
    at = local(NEW_YORK, 2026, 3, 7, 23, 0)
    assert at.utcoffset() == timedelta(hours=-5)
    assert nights.ends_at(at) == utc(2026, 3, 8, 12, 0)  # 08:00 EDT, UTC-4
    # Only nine hours of quiet that night, and 02:30 never happens.
    assert nights.ends_at(utc(2026, 3, 8, 7, 30)) == utc(2026, 3, 8, 12, 0)


def test_new_york_fall_back_ends_at_eight_standard_time() -> None:
    nights = QuietHours(enabled=True, start=time(22), end=time(8), timezone="America/New_York")
    # 23:00 EDT on Saturday 31 October 2026; clocks fall back 02:00 → 01:00 that night.
    assert nights.ends_at(utc(2026, 11, 1, 3, 0)) == utc(2026, 11, 1, 13, 0)  # 08:00 EST, UTC-5
    # Both 01:30s of that night are quiet.
    assert nights.ends_at(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 1, 13, 0)
    assert nights.ends_at(utc(2026, 11, 1, 6, 30)) == utc(2026, 11, 1, 13, 0)
    assert nights.ends_at(utc(2026, 11, 1, 13, 0)) is None


def test_a_window_ending_in_the_skipped_hour() -> None:
    # 22:00–02:30 on the night 02:00–03:00 does not exist: quiet ends when the clock says 03:00.
    short = QuietHours(enabled=True, start=time(22), end=time(2, 30), timezone="America/New_York")
    ends = short.ends_at(local(NEW_YORK, 2026, 3, 7, 23, 0))
    assert ends is not None
    assert utc(2026, 3, 8, 6, 30) <= ends <= utc(2026, 3, 8, 7, 30)
    assert short.ends_at(utc(2026, 3, 8, 8, 0)) is None  # 04:00 EDT


def prefs(**changes: Any) -> EffectivePreferences:
    values: dict[str, Any] = {
        "recipient_id": "u-1",
        "channels": dict.fromkeys(("inapp", "email", "push", "sms", "webhook", "log"), True),
        "categories": {},
        "caps": (Cap(5, 86400),),
        "quiet_hours": NIGHTS,
        "paused_until": None,
        "digest": Digest(enabled=False, at=time(20)),
        "unsubscribed": False,
    }
    values.update(changes)
    return EffectivePreferences(**values)


def test_everything_is_on_by_default() -> None:
    everyone = prefs()
    for channel in ("inapp", "email", "push", "sms", "webhook"):
        assert everyone.opted_in("promo.flash_sale", channel, required=False)
    assert everyone.category("never.heard.of") == CategoryPreference()


def test_unsubscribed_gets_only_required_categories() -> None:
    gone = prefs(unsubscribed=True)
    assert not gone.opted_in("promo.flash_sale", "email", required=False)
    assert not gone.opted_in("order.delivered", "inapp", required=False)
    assert gone.opted_in("account.security", "email", required=True)


def test_a_channel_switched_off_is_off_for_every_category() -> None:
    no_sms = prefs(channels={"sms": False})
    assert not no_sms.opted_in("promo.flash_sale", "sms", required=False)
    assert not no_sms.opted_in("order.delivered", "sms", required=False)
    assert no_sms.opted_in("promo.flash_sale", "email", required=False)
    assert no_sms.opted_in("account.security", "sms", required=True)


def test_a_category_switched_off_is_off_on_every_channel() -> None:
    no_promos = prefs(categories={"promo.flash_sale": CategoryPreference(enabled=False)})
    assert not no_promos.opted_in("promo.flash_sale", "email", required=False)
    assert not no_promos.opted_in("promo.flash_sale", "inapp", required=False)
    assert no_promos.opted_in("promo.member_day", "email", required=False)


def test_a_category_on_one_channel_only() -> None:
    inbox_only = prefs(
        categories={
            "promo.flash_sale": CategoryPreference(channels={"email": False, "push": False})
        }
    )
    assert inbox_only.opted_in("promo.flash_sale", "inapp", required=False)
    assert not inbox_only.opted_in("promo.flash_sale", "email", required=False)
    assert not inbox_only.opted_in("promo.flash_sale", "push", required=False)
    assert inbox_only.opted_in("promo.member_day", "email", required=False)


def test_required_categories_ignore_every_switch() -> None:
    everything_off = prefs(
        unsubscribed=True,
        channels=dict.fromkeys(("inapp", "email", "push", "sms", "webhook"), False),
        categories={
            "account.security": CategoryPreference(
                enabled=False, channels={"email": False, "sms": False}
            )
        },
    )
    for channel in ("email", "sms", "inapp"):
        assert everything_off.opted_in("account.security", channel, required=True)
        assert not everything_off.opted_in("account.security", channel, required=False)


def test_a_pause_holds_until_its_end() -> None:
    until = utc(2026, 12, 1)
    paused = prefs(paused_until=until)
    assert paused.paused_at(utc(2026, 11, 30, 23, 59)) == until
    assert paused.paused_at(until) is None
    assert paused.paused_at(utc(2026, 12, 2)) is None
    assert prefs().paused_at(utc(2026, 11, 30)) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("00:00", time(0)), ("08:00", time(8)), ("23:59", time(23, 59)), ("22:30", time(22, 30))],
)
def test_times_of_day(text: str, expected: time) -> None:
    assert parse_hhmm(text) == expected


@pytest.mark.parametrize(
    "text", ["24:00", "25:00", "7:00", "07:60", "ab:cd", "0700", "", "-1:00", "07:00:00"]
)
def test_times_of_day_that_do_not_exist(text: str) -> None:
    with pytest.raises(ValueError, match="time of day"):
        parse_hhmm(text)


def test_weekdays_are_monday_first_like_python() -> None:
    assert WEEKDAYS[datetime(2026, 11, 23).weekday()] == "mon"
    assert WEEKDAYS[datetime(2026, 11, 22).weekday()] == "sun"
