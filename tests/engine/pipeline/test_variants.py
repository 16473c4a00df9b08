"""A/B assignment over generated recipient ids and weights (Hypothesis): stable for one
recipient and test, split in proportion to the weights, independent between tests."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.pipeline.content import Composer
from engine.pipeline.variants import Variant, assign
from engine.store.models import Category, Notification, Recipient

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


FIELDS = ("title", "body", "html", "action_url")
# How a template may name a field: an email's subject is its title, its text the body.
NAMES = {"title": ("title", "subject"), "body": ("body", "text"), "html": ("html",)}
NAMES["action_url"] = ("action_url",)
CATEGORY = {
    "subject": "C title",
    "text": "C body",
    "html": "<p>C</p>",
    "action_url": "https://c.x/",
}


def _literal(layer: str, field: str) -> str:
    return f"https://{layer}.x/" if field == "action_url" else f"{layer} {field}"


@settings(max_examples=200, deadline=None)
@given(
    own_content=st.sets(st.sampled_from(FIELDS)),
    own_templates=st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 1)),
    base=st.none() | st.sets(st.sampled_from(FIELDS[1:])),
)
def test_a_variant_overrides_only_the_fields_it_gives(
    own_content: set[str], own_templates: dict[str, int], base: set[str] | None
) -> None:
    """Each field of a delivery's copy comes from the top layer that gives it: the
    variant's literal content, its templates for the channel, then the notification's own
    content (whole), else the category's templates for the channel."""
    category = Category(
        key="promo.x",
        name="x",
        kind="promotional",
        priority="normal",
        channels=["email"],
        templates={"email": {"en": CATEGORY}},
    )
    content = None
    if base is not None:
        content = {"title": "N title", "body": ""} | {f: _literal("N", f) for f in base}
    variant = Variant(
        "b",
        content={f: _literal("V", f) for f in own_content} or None,
        templates={
            "email": {
                "en": {
                    NAMES[f][i % len(NAMES[f])]: _literal("T", f) for f, i in own_templates.items()
                }
            }
        },
    )
    notification = Notification(
        id=1,
        category="promo.x",
        audience={"all": True},
        data={},
        content=content,
        variants=[{"name": "a"}, {"name": "b"}],
    )
    reader = Recipient(id="r", locale="en")
    copy = Composer().compose(notification, category, "email", reader, dict, variant)
    by_category = dict(zip(FIELDS, CATEGORY.values(), strict=True))
    for field in FIELDS:
        if field in own_content:
            expected: str | None = _literal("V", field)
        elif field in own_templates:
            expected = _literal("T", field)
        elif content is not None:
            expected = content.get(field)
        else:
            expected = by_category[field]
        got = getattr(copy, field)
        assert (got or None) == (expected or None), (field, got, expected)
    # Without the variant, the notification's own copy, as before.
    plain = Composer().compose(notification, category, "email", reader, dict)
    assert plain.title == (content["title"] if content else "C title")


def test_content_is_literal_copy_and_templates_are_rendered() -> None:
    """As the README says: a variant's `content`, like the notification's, is sent as it
    is written; its `templates`, like the category's, are rendered with the data."""
    category = Category(
        key="promo.x",
        name="x",
        kind="promotional",
        priority="normal",
        channels=["inapp"],
        templates={"inapp": {"en": {"title": "{{ data.card }}", "body": "{{ data.card }}!"}}},
    )
    notification = Notification(
        id=1,
        category="promo.x",
        audience={"all": True},
        data={"card": "原神月卡"},
        content={"title": "{{ data.card }} as written", "body": ""},
    )
    reader = Recipient(id="r", locale="en")
    own = Composer().compose(notification, category, "inapp", reader, dict)
    assert own.title == "{{ data.card }} as written"
    literal = Variant("a", content={"body": "{{ data.card }} stays"})
    templated = Variant("b", templates={"inapp": {"en": {"body": "{{ data.card }} renders"}}})
    notification.content = None
    got = Composer().compose(notification, category, "inapp", reader, dict, literal)
    assert (got.title, got.body) == ("原神月卡", "{{ data.card }} stays")
    got = Composer().compose(notification, category, "inapp", reader, dict, templated)
    assert (got.title, got.body) == ("原神月卡", "原神月卡 renders")
