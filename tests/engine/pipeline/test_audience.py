"""A notification reaches exactly its audience: the API's count, the plan and every chunk
select the same recipients, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import col, select

from engine.catalog import categories
from engine.pipeline import accept, planning
from engine.schemas.catalog import CategoryIn
from engine.schemas.notifications import NotificationIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification, PlanChunk, Recipient
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from tests.engine.conftest import Processes, recipient, settled, wait_for

BOTH = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
PROMO = {
    "name": "Member day",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Member day", "body": "for you"}}},
}


def _whales_and_minnows(admin: httpx.Client) -> tuple[list[str], list[str]]:
    """s-00…s-11: even numbers spend 9000 a year (whales), odd ones 100 (minnows)."""
    admin.put("/v1/categories/promo.member_day", json=PROMO).raise_for_status()
    recently = datetime.now(UTC).isoformat()
    whales, minnows = [], []
    for n in range(12):
        rid = f"s-{n:02d}"
        spend = 9000 if n % 2 == 0 else 100
        tags = ["game.mobile"] if n % 4 == 0 else ["video.anime"]
        recipient(admin, rid, annual_spend=spend, last_active_at=recently, tags=tags)
        (whales if spend == 9000 else minnows).append(rid)
    return whales, minnows


@BOTH
def test_a_segment_broadcast_reaches_exactly_the_segment(
    admin: httpx.Client, pipeline: Processes
) -> None:
    whales, minnows = _whales_and_minnows(admin)
    accepted = admin.post(
        "/v1/notifications",
        json={"category": "promo.member_day", "to": {"segment": {"tier": ["whale"]}}},
    )
    assert accepted.status_code == 202 and accepted.json()["recipients"] == 6
    view = wait_for(lambda: settled(admin, accepted.json()["id"]))
    assert sorted(d["recipient"] for d in view["deliveries"]) == whales
    assert view["recipients"] == 6
    for rid in whales:
        assert [m["title"] for m in _inbox(admin, rid)] == ["Member day"]
    for rid in minnows:
        assert _inbox(admin, rid) == []

    # Every condition holds at once: whales who follow mobile games (s-00, s-04, s-08).
    both = {"segment": {"tier": ["whale"], "activity": ["active"], "tags_any": ["game.mobile"]}}
    answer = admin.post("/v1/notifications", json={"category": "promo.member_day", "to": both})
    assert answer.json()["recipients"] == 3
    view = wait_for(lambda: settled(admin, answer.json()["id"]))
    assert sorted(d["recipient"] for d in view["deliveries"]) == ["s-00", "s-04", "s-08"]


def test_an_empty_segment_is_refused_and_everyone_is_all(
    admin: httpx.Client, pipeline: Processes
) -> None:
    _whales_and_minnows(admin)
    for empty in ({}, {"tier": []}, {"tags_any": []}, {"activity": None}):
        answer = admin.post(
            "/v1/notifications", json={"category": "promo.member_day", "to": {"segment": empty}}
        )
        assert answer.status_code == 422, (empty, answer.text)
        assert answer.json()["error"]["field"].startswith("to.segment"), answer.json()
    everyone = admin.post(
        "/v1/notifications", json={"category": "promo.member_day", "to": {"all": True}}
    )
    assert everyone.status_code == 202 and everyone.json()["recipients"] == 12
    view = wait_for(lambda: settled(admin, everyone.json()["id"]))
    assert len({d["recipient"] for d in view["deliveries"]}) == 12


def test_a_bad_audience_names_the_field_inside_it(admin: httpx.Client) -> None:
    admin.put("/v1/categories/promo.member_day", json=PROMO).raise_for_status()
    for to, field in (
        ({"segment": {"tier": ["kraken"]}}, "to.segment.tier.0"),
        ({"segment": {"tags_all": [""]}}, "to.segment.tags_all.0"),
        ({"segment": {"colour": ["red"]}}, "to.segment.colour"),
        ({"all": False}, "to.all"),
        ({"everyone": True}, "to"),
    ):
        answer = admin.post("/v1/notifications", json={"category": "promo.member_day", "to": to})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == field, answer.text


def _inbox(admin: httpx.Client, rid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = admin.get(f"/v1/recipients/{rid}/inbox").json()["items"]
    return items


# The property: for any recipients and any segment, the planned set is exactly the set a
# plain reading of the segment's rules picks (written out here, not taken from the code).
AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TAGS = ("a", "b", "c", "d")
SPENDS = (0.0, 1.0, 499.99, 500.0, 501.0, 4999.0, 5000.0, 5000.01, 9000.0)
DAYS_AGO = (None, 0.0, 6.9, 7.0, 7.001, 29.0, 30.0, 30.001, 400.0, -1.0)


def _oracle(person: dict[str, Any], segment: dict[str, Any], settings: Settings) -> bool:
    spend = person["annual_spend"]
    if spend > settings.whale_spend:
        tier = "whale"
    elif spend >= settings.dolphin_spend:
        tier = "dolphin"
    else:
        tier = "minnow"
    seen = person["last_active_at"]
    if seen is None or AT - seen > timedelta(days=settings.sleeping_days):
        activity = "churned"
    elif AT - seen > timedelta(days=settings.active_days):
        activity = "sleeping"
    else:
        activity = "active"
    tags = set(person["tags"] or ())
    return (
        ("tier" not in segment or tier in segment["tier"])
        and ("activity" not in segment or activity in segment["activity"])
        and ("tags_any" not in segment or bool(tags & set(segment["tags_any"])))
        and ("tags_all" not in segment or tags >= set(segment["tags_all"]))
    )


people = st.lists(
    st.fixed_dictionaries(
        {
            "annual_spend": st.sampled_from(SPENDS),
            "days": st.sampled_from(DAYS_AGO),
            "tags": st.none() | st.lists(st.sampled_from(TAGS), max_size=3, unique=True),
        }
    ),
    max_size=14,
)
segments = st.fixed_dictionaries(
    {},
    optional={
        "tier": st.lists(st.sampled_from(("whale", "dolphin", "minnow")), min_size=1, unique=True),
        "activity": st.lists(
            st.sampled_from(("active", "sleeping", "churned")), min_size=1, unique=True
        ),
        "tags_any": st.lists(st.sampled_from(TAGS), min_size=1, max_size=3, unique=True),
        "tags_all": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2, unique=True),
    },
).filter(bool)


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Iterator[Runtime]:
    """Planning in this process, three recipients a chunk, so chunks reload id ranges."""
    with db.session() as session:
        categories.upsert(session, "promo.member_day", CategoryIn.model_validate(PROMO))
    small = settings.model_copy(update={"plan_chunk_size": 3, "plan_ahead": 1})
    rt = Runtime(small, make_broker(small))
    yield rt
    rt.close()


@BOTH
@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=people, segment=segments)
def test_planning_reaches_exactly_who_the_segment_describes(
    runtime: Runtime, people: list[dict[str, Any]], segment: dict[str, Any]
) -> None:
    settings = runtime.settings
    with runtime.db.session() as session:
        for table in (Delivery, PlanChunk, Notification, Recipient):
            session.execute(delete(table))
        session.commit()
        rows = []
        for n, person in enumerate(people):
            days = person.pop("days")
            person["last_active_at"] = None if days is None else AT - timedelta(days=days)
            rows.append(Recipient(id=f"p-{n:02d}", **person))
        session.add_all(rows)
    spec = NotificationIn.model_validate(
        {"category": "promo.member_day", "to": {"segment": segment}, "send_at": AT.isoformat()}
    )
    (accepted,) = accept.accept_all(runtime.db, [spec], settings=settings, batch=False)
    planning.plan(runtime, accepted.id)
    with runtime.db.session() as session:
        cut = session.exec(
            select(PlanChunk.seq, PlanChunk.lo, PlanChunk.hi, PlanChunk.size)
            .where(col(PlanChunk.notification_id) == accepted.id)
            .order_by(col(PlanChunk.seq))
        ).all()
    for seq, *_ in cut:
        planning.plan_chunk(runtime, accepted.id, seq)
    with runtime.db.session() as session:
        planned = set(
            session.exec(
                select(Delivery.recipient_id).where(col(Delivery.notification_id) == accepted.id)
            )
        )
    expected = {f"p-{n:02d}" for n, p in enumerate(people) if _oracle(p, segment, settings)}
    assert planned == expected
    assert accepted.recipients == len(expected)
    # The chunks tile the audience in id order: three each, the last what is left.
    ordered = sorted(expected)
    assert [(lo, hi, size) for _, lo, hi, size in cut] == [
        (ordered[i], ordered[min(i + 3, len(ordered)) - 1], min(3, len(ordered) - i))
        for i in range(0, len(ordered), 3)
    ]
