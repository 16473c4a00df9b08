"""Digest rules as pure functions: which digest day an instant belongs to in the
recipient's zone, a deferral by a cap keeping a copy in the digest, and caps by activity."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from engine.pipeline import digests, policy
from engine.pipeline.policy import Decision, Rules
from engine.settings import Settings
from engine.store.states import DeliveryStatus, Reason
from preferences.model import Cap, Digest, EffectivePreferences
from preferences.store import resolve


def prefs(zone: str = "Asia/Shanghai", at: time = time(20, 0)) -> EffectivePreferences:
    base = resolve(None, None, settings=Settings(default_timezone=zone), recipient_id="u-1")
    return base.__class__(**{**base.__dict__, "digest": Digest(enabled=True, at=at)})


def test_a_digest_day_runs_from_one_digest_time_to_the_next_in_the_recipients_zone() -> None:
    shanghai = prefs()
    # 19:59 and 20:00 on 30 November in Shanghai (UTC+8)
    assert digests.period(shanghai, datetime(2026, 11, 30, 11, 59, tzinfo=UTC)) == "2026-11-29"
    assert digests.period(shanghai, datetime(2026, 11, 30, 12, 0, tzinfo=UTC)) == "2026-11-30"
    # 08:00 the next morning, after quiet hours held the digest: still that digest's day
    assert digests.period(shanghai, datetime(2026, 12, 1, 0, 0, tzinfo=UTC)) == "2026-11-30"
    # New York's 20:00 on 30 November is 01:00 UTC on 1 December
    york = prefs("America/New_York")
    assert digests.period(york, datetime(2026, 12, 1, 1, 0, tzinfo=UTC)) == "2026-11-30"
    assert digests.period(york, datetime(2026, 12, 1, 0, 59, tzinfo=UTC)) == "2026-11-29"


def test_a_cap_deferral_keeps_a_digest_copy_in_the_digest() -> None:
    defer = Rules(
        key="social.likes", kind="social", priority="low", channels=("inapp",), over_cap="defer"
    )
    due = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    frees = due + timedelta(days=1)
    held = Decision("email", DeliveryStatus.SCHEDULED, Reason.DIGEST, due)
    quiet = Decision("push", DeliveryStatus.SCHEDULED, Reason.QUIET_HOURS, due)
    out = policy.over_cap(defer, [held, quiet], frees)
    assert [(d.reason, d.due_at) for d in out] == [
        (Reason.DIGEST, frees),
        (Reason.CAPPED, frees),
    ]


def test_caps_by_activity_add_to_the_category_caps_for_that_activity_only() -> None:
    weekly, monthly, daily = Cap(2, 7 * 86400), Cap(1, 30 * 86400), Cap(5, 86400)
    rules = Rules(
        key="promo.weekly",
        kind="promotional",
        priority="normal",
        channels=("inapp",),
        caps=(daily,),
        caps_by_activity=(("active", (weekly,)), ("churned", (monthly,))),
    )
    own = prefs()
    counters = {
        activity: [cap for name, cap in policy.cap_limits(rules, own, activity) if name[0] == "c"]
        for activity in ("active", "sleeping", "churned")
    }
    assert counters == {
        "active": [daily, weekly],
        "sleeping": [daily],
        "churned": [daily, monthly],
    }
