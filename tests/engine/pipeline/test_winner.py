"""An A/B test slice, pure parts: the slice is stable and about its share of the audience,
split among the variants by weight; the winner is the best rate, and a tie or no data
goes to the heaviest variant, then the first listed; the rest's deliveries wait for the
decision, an escalation moving along with them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pipeline.planning import _hold_for_winner
from engine.pipeline.policy import Decision
from engine.pipeline.variants import Variant, assign, in_slice
from engine.pipeline.winner import choose
from engine.store.models import Notification
from engine.store.states import DeliveryStatus, Reason

IDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
)


@settings(max_examples=25, deadline=None)
@given(test=IDS, prefix=IDS, share=st.floats(min_value=0.05, max_value=0.95))
def test_the_slice_is_its_share_of_the_audience_and_the_same_every_time(
    test: str, prefix: str, share: float
) -> None:
    n = 6000
    members = [f"{prefix}{i}" for i in range(n) if in_slice(test, f"{prefix}{i}", share)]
    assert abs(len(members) - share * n) <= 5 * math.sqrt(n * share * (1 - share))
    assert all(in_slice(test, r, share) for r in members)
    # Its members still split by the weights (1:3) as the whole audience would.
    to_b = sum(assign(test, r, [1, 3]) for r in members)
    m = len(members)
    assert abs(to_b - 0.75 * m) <= 5 * math.sqrt(m * 0.75 * 0.25) + 1


def test_a_bigger_slice_keeps_the_members_of_a_smaller_one() -> None:
    small = {f"u{i}" for i in range(2000) if in_slice("t", f"u{i}", 0.1)}
    assert small and all(in_slice("t", r, 0.3) for r in small)


A, B, C = Variant("a", weight=1), Variant("b", weight=1), Variant("c", weight=2)


def test_the_best_rate_wins() -> None:
    figures = {"a": {"click_rate": 0.1}, "b": {"click_rate": 0.3}, "c": {"click_rate": 0.2}}
    assert choose([A, B, C], figures, "click_rate") == ("b", "best")


def test_a_tie_goes_to_the_heaviest_then_the_first_listed() -> None:
    tied = {"a": {"open_rate": 0.5}, "b": {"open_rate": 0.5}, "c": {"open_rate": 0.1}}
    assert choose([A, B, C], tied, "open_rate") == ("a", "tie")
    heavy = {"a": {"open_rate": 0.5}, "b": {"open_rate": 0.1}, "c": {"open_rate": 0.5}}
    assert choose([A, B, C], heavy, "open_rate") == ("c", "tie")


def test_no_data_goes_to_the_heaviest_then_the_first_listed() -> None:
    nothing = {"a": {"conversion_rate": None}, "b": {"conversion_rate": None}}
    assert choose([A, B, C], nothing, "conversion_rate") == ("c", "no_data")
    assert choose([A, B], {}, "conversion_rate") == ("a", "no_data")
    # A variant nobody got does not win over one that was measured at zero.
    assert choose([A, C], {"a": {"conversion_rate": 0.0}}, "conversion_rate") == ("a", "best")


def test_the_rest_waits_for_the_decision_on_every_channel_and_an_escalation_moves_along() -> None:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    decide = at + timedelta(hours=1)
    notification = Notification(
        id=7,
        category="promo.x",
        audience={"ids": ["in", "out"]},
        variants=[{"name": "a"}, {"name": "b"}],
        ab_test={"slice": 0.5, "metric": "click_rate", "wait": 3600},
        ab_decide_at=decide,
    )
    q, s = DeliveryStatus.QUEUED, DeliveryStatus.SCHEDULED
    plan = [
        Decision("inapp", q),
        Decision("email", s, Reason.QUIET_HOURS, at + timedelta(minutes=20)),
        Decision("sms", s, Reason.ESCALATION, at + timedelta(minutes=30)),
        Decision("push", s, Reason.QUIET_HOURS, at + timedelta(hours=3)),
        Decision("webhook", DeliveryStatus.SUPPRESSED, Reason.OPTED_OUT),
    ]
    decisions = {"in": list(plan), "out": list(plan)}
    picks: dict[str, Variant | None] = {"in": Variant("a"), "out": None}
    _hold_for_winner(notification, picks, decisions, at)
    assert decisions["in"] == plan  # the slice goes as planned
    assert decisions["out"] == [
        Decision("inapp", s, Reason.AB_TEST, decide),
        Decision("email", s, Reason.AB_TEST, decide),
        Decision("sms", s, Reason.ESCALATION, decide + timedelta(minutes=30)),
        Decision("push", s, Reason.QUIET_HOURS, at + timedelta(hours=3)),
        Decision("webhook", DeliveryStatus.SUPPRESSED, Reason.OPTED_OUT),
    ]
