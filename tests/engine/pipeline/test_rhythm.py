"""The campaign rhythm's rules, over generated histories (Hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.pipeline import rhythm
from engine.pipeline.policy import Decision, expire_late
from engine.store.states import DeliveryStatus, Reason

STATUSES = ("scheduled", "queued", "sent", "delivered", "opened", "read", "clicked", "converted")
FATES = st.sampled_from(
    [
        ("queued", None, None),
        ("scheduled", "quiet_hours", 3600),
        ("scheduled", "capped", 86400),
        ("suppressed", "opted_out", None),
    ]
)
AT = datetime(2026, 12, 1, 12, tzinfo=UTC)


def decisions_of(fates: list[tuple[str, str | None, int | None]]) -> list[Decision]:
    return [
        Decision(f"c{i}", s, r, AT + timedelta(seconds=d) if d is not None else None)
        for i, (s, r, d) in enumerate(fates)
    ]


@given(
    fates=st.lists(FATES, min_size=1, max_size=5),
    earlier=st.lists(st.sampled_from(STATUSES), max_size=8),
)
def test_no_step_after_a_click_and_never_two_steps_waiting(
    fates: list[tuple[str, str | None, int | None]], earlier: list[str]
) -> None:
    history = [rhythm.Earlier(i + 1, "email", s) for i, s in enumerate(earlier)]
    out, replaced = rhythm.step_fate(decisions_of(fates), history)
    engaged = any(s in ("clicked", "converted") for s in earlier)
    if engaged:
        assert all(d.status == "suppressed" for d in out)
        assert replaced == []
        # The reason says how far they went: a click alone is not a conversion.
        went = "converted_earlier" if "converted" in earlier else "clicked_earlier"
        left_out = [d for d, before in zip(out, decisions_of(fates), strict=True) if before != d]
        assert all(d.reason == went for d in left_out)
    else:
        assert out == decisions_of(fates)
        # every earlier step still waiting is replaced: at most this step waits
        assert sorted(replaced) == [e.id for e in history if e.status == "scheduled"]


@given(
    fates=st.lists(FATES, min_size=1, max_size=5),
    expires_in=st.integers(min_value=1, max_value=200_000) | st.none(),
)
def test_nothing_waits_until_its_expiry(
    fates: list[tuple[str, str | None, int | None]], expires_in: int | None
) -> None:
    expires_at = AT + timedelta(seconds=expires_in) if expires_in is not None else None
    out = expire_late(decisions_of(fates), expires_at)
    for before, after in zip(decisions_of(fates), out, strict=True):
        late = (
            expires_at is not None
            and before.status == "scheduled"
            and before.due_at is not None
            and before.due_at >= expires_at
        )
        expected = ("suppressed", "expired") if late else (before.status, before.reason)
        assert (after.status, after.reason) == expected


@given(st.integers(min_value=1, max_value=10**7))
def test_offsets_read_back_as_written(seconds: int) -> None:
    written = rhythm.format_offset(-seconds)
    assert rhythm.parse_offset(written) == -seconds
    assert rhythm.parse_offset(-seconds) == -seconds


@pytest.mark.parametrize("bad", ["1h", "0s", 0, 5, "+1h", "-x", "-"])
def test_offsets_at_or_after_the_event_are_refused(bad: str | int) -> None:
    with pytest.raises(ValueError):
        rhythm.parse_offset(bad)


def test_default_steps_are_three_days_two_days_one_hour() -> None:
    event = datetime(2026, 12, 12, 4, tzinfo=UTC)
    assert rhythm.step_times(event, rhythm.DEFAULT_STEPS) == [
        datetime(2026, 12, 9, 4, tzinfo=UTC),
        datetime(2026, 12, 10, 4, tzinfo=UTC),
        datetime(2026, 12, 12, 3, tzinfo=UTC),
    ]


def test_a_step_planned_after_a_later_one_sends_nothing() -> None:
    decisions = [
        Decision("inapp", DeliveryStatus.QUEUED),
        Decision("email", DeliveryStatus.SCHEDULED, Reason.QUIET_HOURS, AT),
        Decision("sms", DeliveryStatus.SUPPRESSED, Reason.OPTED_OUT),
    ]
    assert rhythm.too_late(decisions) == [
        Decision("inapp", DeliveryStatus.SUPPRESSED, Reason.COLLAPSED),
        Decision("email", DeliveryStatus.SUPPRESSED, Reason.COLLAPSED),
        Decision("sms", DeliveryStatus.SUPPRESSED, Reason.OPTED_OUT),
    ]
