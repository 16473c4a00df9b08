"""A/B statistics: Wilson intervals and the chi-squared verdict, checked against the
closed-form formula and against clear and null differences."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ops import abtest


@given(
    st.integers(min_value=1, max_value=100_000).flatmap(
        lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
    )
)
def test_wilson_matches_its_formula(case: tuple[int, int]) -> None:
    k, n = case
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = abtest.wilson(k, n) or (None, None)
    assert low == pytest.approx(max(0.0, centre - half), abs=1e-4)
    assert high == pytest.approx(min(1.0, centre + half), abs=1e-4)


def row(sent: int, clicked: int) -> dict[str, object]:
    return {
        "sent": sent,
        "opened": clicked,
        "clicked": clicked,
        "converted": 0,
        "unsubscribed": 0,
        "complained": 0,
        "feedback": {"up": 0, "meh": 0, "down": 0},
    }


def test_a_clear_difference_is_significant_and_a_tiny_sample_is_not() -> None:
    clear = abtest.compare([row(5000, 400), row(5000, 250)])
    assert clear["significant"]["click_rate"] is True
    assert clear["p_values"]["click_rate"] < 0.001
    low, high = clear["ci95"][0]["click_rate"]
    assert low < 400 / 5000 < high
    tiny = abtest.compare([row(20, 3), row(20, 2)])
    assert tiny["significant"]["click_rate"] is False
    # nothing converted anywhere: no test, not a difference
    assert tiny["p_values"]["conversion_rate"] is None
    assert tiny["significant"]["conversion_rate"] is False


def test_a_variant_with_nothing_sent_has_no_interval() -> None:
    assert abtest.compare([row(0, 0), row(10, 1)])["ci95"][0] == {}
