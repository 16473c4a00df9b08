"""Derived segments: spend tier and activity in Python and in SQL alike, and interest tags
in SQL on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from engine.catalog.segments import activity, segment_clause, tier
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEFAULTS = Settings()


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        (1_000_000, "whale"),
        (5000.01, "whale"),
        (5000, "dolphin"),
        (2000, "dolphin"),
        (500, "dolphin"),
        (499.99, "minnow"),
        (0, "minnow"),
    ],
)
def test_spend_tier_boundaries(spend: float, expected: str) -> None:
    assert tier(spend, DEFAULTS) == expected


@pytest.mark.parametrize(
    ("ago", "expected"),
    [
        (timedelta(0), "active"),
        (timedelta(days=7), "active"),
        (timedelta(days=7, seconds=1), "sleeping"),
        (timedelta(days=8), "sleeping"),
        (timedelta(days=30), "sleeping"),
        (timedelta(days=30, seconds=1), "churned"),
        (timedelta(days=400), "churned"),
        (-timedelta(hours=1), "active"),  # a clock slightly ahead is still "just seen"
    ],
)
def test_activity_boundaries(ago: timedelta, expected: str) -> None:
    assert activity(AT - ago, AT, DEFAULTS) == expected


def test_never_seen_is_churned() -> None:
    assert activity(None, AT, DEFAULTS) == "churned"


def test_a_naive_timestamp_read_back_from_sqlite_counts_as_utc() -> None:
    seen = (AT - timedelta(days=7)).replace(tzinfo=None)
    assert activity(seen, AT, DEFAULTS) == "active"
    assert activity(seen - timedelta(seconds=1), AT, DEFAULTS) == "sleeping"


def test_thresholds_come_from_settings() -> None:
    strict = Settings(whale_spend=100, dolphin_spend=10, active_days=1, sleeping_days=2)
    assert tier(101, strict) == "whale"
    assert tier(10, strict) == "dolphin"
    assert tier(9, strict) == "minnow"
    assert activity(AT - timedelta(days=2), AT, strict) == "sleeping"
    assert activity(AT - timedelta(days=3), AT, strict) == "churned"


TAGGED = {
    "t-mobile": ["game.mobile"],
    "t-both": ["game.mobile", "video.anime"],
    "t-none": None,
    "t-empty": [],
    "t-a": ["a"],
    "t-ab": ["a", "b"],
}


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ({"tags_any": ["video.anime", "utility.transit"]}, {"t-both"}),
        ({"tags_any": ["game.mobile"]}, {"t-mobile", "t-both"}),
        ({"tags_any": ["nobody.has.this"]}, set()),
        ({"tags_all": ["game.mobile", "video.anime"]}, {"t-both"}),
        ({"tags_all": ["game.mobile", "game.mobile"]}, {"t-mobile", "t-both"}),
        ({"tags_any": ["a"], "tags_all": ["b"]}, {"t-ab"}),
        (
            {"tags_any": ["a", "game.mobile"], "tier": ["minnow"]},
            {"t-a", "t-ab", "t-mobile", "t-both"},
        ),
        ({"tags_any": ["a"], "tier": ["whale"]}, set()),
    ],
)
@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_interest_tags_in_sql(
    db: Database, settings: Settings, segment: dict[str, list[str]], expected: set[str]
) -> None:
    with db.session() as session:
        session.add_all(Recipient(id=rid, tags=tags) for rid, tags in TAGGED.items())
    with db.session() as session:
        clause = segment_clause(segment, AT, settings)
        assert set(session.exec(select(Recipient.id).where(clause))) == expected


# Recipients on every boundary: (id, annual_spend, days since last seen or None).
PEOPLE = [
    ("r-whale-new", 5000.5, 0.0),
    ("r-dolphin-top", 5000.0, 7.0),
    ("r-dolphin-low", 500.0, 7.5),
    ("r-minnow-top", 499.0, 30.0),
    ("r-minnow", 0.0, 31.0),
    ("r-never", 20_000.0, None),
]
SEGMENTS: list[dict[str, list[str]]] = [
    {"tier": ["whale"]},
    {"tier": ["dolphin"]},
    {"tier": ["minnow"]},
    {"tier": ["whale", "minnow"]},
    {"activity": ["active"]},
    {"activity": ["sleeping"]},
    {"activity": ["churned"]},
    {"tier": ["dolphin", "minnow"], "activity": ["sleeping", "churned"]},
]


@pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
def test_the_sql_filter_agrees_with_the_derived_segments(db: Database, settings: Settings) -> None:
    with db.session() as session:
        for rid, spend, days in PEOPLE:
            seen = None if days is None else AT - timedelta(days=days)
            session.add(Recipient(id=rid, annual_spend=spend, last_active_at=seen))
    with db.session() as session:
        rows = list(session.exec(select(Recipient)))
        for segment in SEGMENTS:
            expected = {
                r.id
                for r in rows
                if (not segment.get("tier") or tier(r.annual_spend, settings) in segment["tier"])
                and (
                    not segment.get("activity")
                    or activity(r.last_active_at, AT, settings) in segment["activity"]
                )
            }
            clause = segment_clause(segment, AT, settings)
            found = set(session.exec(select(Recipient.id).where(clause)))
            assert found == expected, segment
    # The boundaries landed where the spec puts them.
    by_id = {r.id: r for r in rows}
    assert tier(by_id["r-dolphin-top"].annual_spend, settings) == "dolphin"
    assert activity(by_id["r-dolphin-top"].last_active_at, AT, settings) == "active"
    assert activity(by_id["r-minnow-top"].last_active_at, AT, settings) == "sleeping"
    assert activity(by_id["r-never"].last_active_at, AT, settings) == "churned"
