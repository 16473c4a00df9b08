"""A/B assignment over generated recipient ids and weights (Hypothesis): stable for one
recipient and test, split in proportion to the weights, independent between tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pipeline.variants import assign

IDS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40
)
WEIGHTS = st.lists(st.integers(min_value=1, max_value=100), min_size=2, max_size=6)


@given(test=IDS, recipient=IDS, weights=WEIGHTS)
def test_a_recipient_gets_the_same_variant_every_time(
    test: str, recipient: str, weights: list[int]
) -> None:
    first = assign(test, recipient, weights)
    assert 0 <= first < len(weights)
    assert all(assign(test, recipient, list(weights)) == first for _ in range(3))


@settings(max_examples=25, deadline=None)
@given(test=IDS, prefix=IDS, weights=WEIGHTS)
def test_variants_split_recipients_in_proportion_to_their_weights(
    test: str, prefix: str, weights: list[int]
) -> None:
    n = 6000
    counts = [0] * len(weights)
    for i in range(n):
        counts[assign(test, f"{prefix}{i}", weights)] += 1
    total = sum(weights)
    for weight, count in zip(weights, counts, strict=True):
        p = weight / total
        # six standard deviations of a binomial count: a hash that splits fairly never fails
        assert abs(count - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 1, (weights, counts)


@settings(max_examples=20, deadline=None)
@given(first=IDS, second=IDS)
def test_two_tests_assign_independently(first: str, second: str) -> None:
    if first == second:
        return
    n = 4000
    both = sum(
        assign(first, f"u-{i}", [1, 1]) == 0 and assign(second, f"u-{i}", [1, 1]) == 0
        for i in range(n)
    )
    # a quarter land in variant 0 of both, not a half (the same split) or none
    assert abs(both - n / 4) <= 6 * math.sqrt(n * 0.25 * 0.75)


def test_a_zero_weight_total_is_refused() -> None:
    with pytest.raises(ValueError):
        assign("t", "u", [0, 0])
