"""An A/B test slice, pure parts: the slice is stable and about its share of the audience,
split among the variants by weight; the winner is the one rate above every other, a tie
goes to the heaviest of the leaders and nothing to go on (no sends for a variant, or no
rate above zero) to the heaviest variant, each then the first listed; the rest's
deliveries wait for the decision, an escalation moving along with them."""

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
    # Measured at zero is nothing to go on either, whoever was not sent anything.
    assert choose([A, C], {"a": {"conversion_rate": 0.0}}, "conversion_rate") == ("c", "no_data")
    zeros = {"a": {"click_rate": 0.0}, "b": {"click_rate": 0.0}, "c": {"click_rate": 0.0}}
    assert choose([A, B, C], zeros, "click_rate") == ("c", "no_data")


def test_nobody_clicking_in_the_slice_is_not_a_best() -> None:
    """A 50% slice of one recipient: a was sent nothing, b once and not clicked."""
    figures = {
        "a": {"sent": 0, "clicked": 0, "click_rate": None},
        "b": {"sent": 1, "clicked": 0, "click_rate": 0.0},
    }
    assert choose([A, B], figures, "click_rate") == ("a", "no_data")


def test_a_variant_with_no_sends_is_not_beaten_by_one_that_was_measured() -> None:
    figures = {"a": {"click_rate": None}, "b": {"click_rate": 0.4}, "c": {"click_rate": 0.1}}
    assert choose([A, B, C], figures, "click_rate") == ("c", "no_data")


def test_a_tie_above_zero_is_a_tie_and_not_a_best() -> None:
    tied = {"a": {"click_rate": 0.0}, "b": {"click_rate": 0.25}, "c": {"click_rate": 0.25}}
    assert choose([A, B, C], tied, "click_rate") == ("c", "tie")


RATES = st.one_of(st.none(), st.just(0.0), st.sampled_from([0.1, 0.25, 0.5]), st.floats(0.0, 1.0))


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5),
    data=st.data(),
)
def test_the_rule_names_what_the_figures_show(weights: list[int], data: st.DataObject) -> None:
    """Over generated figures: `best` only for a variant above every other (each measured),
    `tie` only for several sharing a best above zero, `no_data` otherwise; `tie` and
    `no_data` go to the heaviest (of the leaders, of all), then the first listed."""
    variants = [Variant(f"v{i}", weight=w) for i, w in enumerate(weights)]
    rates = [data.draw(RATES, label=v.name) for v in variants]
    figures = {v.name: {"click_rate": r} for v, r in zip(variants, rates, strict=True)}
    winner, rule = choose(variants, figures, "click_rate")
    measured = [r for r in rates if r is not None]
    others = [r for v, r in zip(variants, rates, strict=True) if v.name != winner]
    mine = figures[winner]["click_rate"]

    def first_heaviest(among: list[Variant]) -> str:
        top = max(v.weight for v in among)
        return next(v.name for v in among if v.weight == top)

    if rule == "best":
        assert mine is not None and mine > 0
        assert all(r is not None and mine > r for r in others)
    elif rule == "tie":
        assert mine is not None and mine > 0 and len(measured) == len(rates)
        leaders = [v for v, r in zip(variants, rates, strict=True) if r == mine]
        assert len(leaders) > 1 and mine == max(measured)
        assert winner == first_heaviest(leaders)
    else:
        assert rule == "no_data"
        assert None in rates or max(measured) == 0
        assert winner == first_heaviest(variants)
    # Every set of figures with a strict, measured, positive leader names it `best`.
    if None not in rates and max(rates) > 0 and rates.count(max(rates)) == 1:
        assert rule == "best"


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
