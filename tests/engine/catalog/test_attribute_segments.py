"""Segments on the recipient's own attributes (equals, in, a range of numbers or of texts
such as ISO dates), next to tier: the SQL
condition on SQLite and PostgreSQL agrees with a plain-Python reading of the rules over
generated recipients and segments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import select

from engine.catalog.segments import segment_clause, tier
from engine.schemas.catalog import SegmentIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
KEYS = ("level", "region", "vip", "score")
MISSING = object()

numbers = st.integers(-20, 20) | st.integers(-80, 80).map(lambda i: i / 4)
DATES = ["2026-01-05", "2026-11-30", "2026-11-30T08:00:00Z", "2026-11-30T20:00:00Z", "2025-12"]
texts = st.sampled_from(["north", "south", "North", "", "12", "true", "阿明", "é", *DATES])
scalars = numbers | texts | st.booleans()
values = scalars | st.none() | st.lists(numbers, max_size=2) | st.just({"nested": 1})
attributes = st.none() | st.dictionaries(st.sampled_from(KEYS), values, max_size=4)
people = st.lists(
    st.tuples(attributes, st.sampled_from([0.0, 600.0, 9000.0])), min_size=0, max_size=10
)
OPERATORS = st.sampled_from(["gt", "gte", "lt", "lte"])
bounds = st.dictionaries(OPERATORS, numbers, min_size=1) | st.dictionaries(
    OPERATORS, texts, min_size=1
)
condition = (
    st.builds(lambda v: {"eq": v}, scalars)
    | st.builds(lambda vs: {"in": vs}, st.lists(scalars, min_size=1, max_size=4))
    | bounds
)
segments = st.builds(
    lambda conds, tiers: {"attributes": conds, **({"tier": tiers} if tiers else {})},
    st.dictionaries(st.sampled_from(KEYS), condition, min_size=1, max_size=3),
    st.none() | st.lists(st.sampled_from(["whale", "dolphin", "minnow"]), min_size=1, max_size=2),
)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(value: Any, wanted: Any) -> bool:
    """Equal as JSON values of one type: 12 is 12.0, never "12" nor true."""
    if isinstance(wanted, bool) or isinstance(value, bool):
        return isinstance(wanted, bool) and isinstance(value, bool) and value == wanted
    if _number(wanted):
        return _number(value) and value == wanted
    return isinstance(value, str) and value == wanted


def oracle(attrs: dict[str, Any] | None, spend: float, segment: dict[str, Any]) -> bool:
    if segment.get("tier") and tier(spend, Settings()) not in segment["tier"]:
        return False
    for key, cond in segment["attributes"].items():
        value = (attrs or {}).get(key, MISSING)
        if value is MISSING:
            return False
        if "eq" in cond and not _same(value, cond["eq"]):
            return False
        if "in" in cond and not any(_same(value, w) for w in cond["in"]):
            return False
        ranged = {op: b for op, b in cond.items() if op in ("gt", "gte", "lt", "lte")}
        if ranged and not all(
            isinstance(value, str) if isinstance(b, str) else _number(value)
            for b in ranged.values()
        ):
            return False
        for op, bound in ranged.items():
            if op == "gt" and not value > bound:
                return False
            if op == "gte" and not value >= bound:
                return False
            if op == "lt" and not value < bound:
                return False
            if op == "lte" and not value <= bound:
                return False
    return True


def _check(db: Database, settings: Settings, crowd: list[Any], segment: dict[str, Any]) -> None:
    stored = SegmentIn.model_validate(segment).document()  # as the API stores it
    with db.session() as session:
        session.execute(delete(Recipient))
        for i, (attrs, spend) in enumerate(crowd):
            session.add(Recipient(id=f"r-{i:02}", attributes=attrs, annual_spend=spend))
    with db.session() as session:
        found = set(session.exec(select(Recipient.id).where(segment_clause(stored, AT, settings))))
    expected = {
        f"r-{i:02}" for i, (attrs, spend) in enumerate(crowd) if oracle(attrs, spend, segment)
    }
    assert found == expected, (segment, crowd)


@hypothesis_settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(crowd=people, segment=segments)
def test_attribute_segments_on_sqlite(
    db: Database, settings: Settings, crowd: list[Any], segment: dict[str, Any]
) -> None:
    _check(db, settings, crowd, segment)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(crowd=people, segment=segments)
def test_attribute_segments_on_postgresql(
    db: Database, settings: Settings, crowd: list[Any], segment: dict[str, Any]
) -> None:
    _check(db, settings, crowd, segment)


def test_the_readers_words_for_the_same_cases() -> None:
    """A few cases spelled out, so the rules read plainly next to the generated ones."""
    assert oracle({"level": 12}, 0, {"attributes": {"level": {"eq": 12.0}}})
    assert not oracle({"level": "12"}, 0, {"attributes": {"level": {"eq": 12}}})
    assert not oracle({"vip": True}, 0, {"attributes": {"vip": {"eq": 1}}})
    assert not oracle({}, 0, {"attributes": {"vip": {"eq": False}}})
    assert oracle({"score": 7.5}, 0, {"attributes": {"score": {"gte": 7, "lt": 8}}})


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_a_range_of_iso_dates_picks_who_joined_in_it(db: Database, settings: Settings) -> None:
    crowd = [
        ({"joined": "2025-12-24"}, 0.0),
        ({"joined": "2026-03-01"}, 0.0),
        ({"joined": "2026-11-30T08:00:00Z"}, 0.0),
        ({"joined": 2026}, 0.0),
        ({}, 0.0),
    ]
    segment = {"attributes": {"joined": {"gte": "2026-01-01", "lt": "2026-12-01"}}}
    assert [oracle(attrs, spend, segment) for attrs, spend in crowd] == [
        False,
        True,
        True,
        False,
        False,
    ]
    _check(db, settings, crowd, segment)


def test_a_range_mixing_numbers_and_texts_is_refused() -> None:
    with pytest.raises(ValueError, match="all numbers or all texts"):
        SegmentIn.model_validate({"attributes": {"joined": {"gte": "2026-01-01", "lt": 5}}})
