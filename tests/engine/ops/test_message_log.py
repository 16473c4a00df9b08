"""Listing recipients for the console: for any population and any filter, paging through
the list yields exactly the recipients a plain reading of the filter picks, each once, in
id order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete

from engine.ops import message_log
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TAGS = ("game", "video", "transit")
SPENDS = (0.0, 499.99, 500.0, 5000.0, 5000.01)
DAYS_AGO = (None, 0.0, 7.0, 7.001, 30.0, 30.001)
# Ids that trip a LIKE (`_`, case) or a byte-order assumption.
IDS = ("a", "a_1", "ab", "A_1", "a.b", "b", "b-2", "ba", "a1", "Z")


def _oracle(person: dict[str, Any], wanted: dict[str, str], settings: Settings) -> bool:
    spend = person["annual_spend"]
    tier = "whale" if spend > settings.whale_spend else "minnow"
    if settings.dolphin_spend <= spend <= settings.whale_spend:
        tier = "dolphin"
    days = person["days"]
    if days is None or days > settings.sleeping_days:
        activity = "churned"
    elif days > settings.active_days:
        activity = "sleeping"
    else:
        activity = "active"
    return (
        person["id"].startswith(wanted.get("prefix", ""))
        and wanted.get("tier", tier) == tier
        and wanted.get("activity", activity) == activity
        and ("tag" not in wanted or wanted["tag"] in person["tags"])
    )


people = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.sampled_from(IDS),
            "annual_spend": st.sampled_from(SPENDS),
            "days": st.sampled_from(DAYS_AGO),
            "tags": st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
        }
    ),
    max_size=10,
    unique_by=lambda p: p["id"],
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "prefix": st.sampled_from(("a", "a_", "A", "b", "a%", "ab")),
        "tier": st.sampled_from(("whale", "dolphin", "minnow")),
        "activity": st.sampled_from(("active", "sleeping", "churned")),
        "tag": st.sampled_from(TAGS),
    },
)


@BOTH
@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(population=people, wanted=filters, size=st.integers(1, 4))
def test_paging_through_a_filter_lists_exactly_its_recipients(
    db: Database,
    settings: Settings,
    population: list[dict[str, Any]],
    wanted: dict[str, str],
    size: int,
) -> None:
    with db.session() as session:
        session.execute(delete(Recipient))
        for p in population:
            seen = None if p["days"] is None else AT - timedelta(days=p["days"])
            session.add(
                Recipient(
                    id=p["id"], annual_spend=p["annual_spend"], last_active_at=seen, tags=p["tags"]
                )
            )
    where = message_log.recipient_filter(settings, at=AT, **wanted)
    listed: list[str] = []
    after: str | None = None
    with db.session() as session:
        while True:
            page, after = message_log.recipients(
                session, settings, where=where, after=after, limit=size
            )
            assert len(page) <= size
            listed += [r.id for r in page]
            if after is None:
                break
    expected = {p["id"] for p in population if _oracle(p, wanted, settings)}
    assert sorted(listed) == sorted(expected)
    assert len(listed) == len(set(listed))
