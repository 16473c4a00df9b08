"""A chunk is planned once per distinct situation, not once per recipient: recipients who
stored the same choices (or none) in the same zone share one resolution of their
preferences (`store.shared`, read beside them by `store.with_stored`), one decision per
set of addresses (`policy.decide_many`), one set of caps per activity (`caps.check_many`)
and one set of cap windows (`Counters.admit`). Hypothesis generates the stored choices,
time zones, addresses, activities, categories and clocks, stored in real SQL and counted
in a real Redis; every shared answer must equal the one worked out for each recipient
alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from engine.pipeline import caps, planning, policy
from engine.pipeline.counters import CapCheck, Counters
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Preference, Recipient
from engine.store.redis_keys import RedisKeys
from preferences import store
from preferences.model import Cap
from tests.conftest import COUNTERS_DB, REDIS_PORT

BOTH = pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Shanghai", "Australia/Sydney")
CHANNELS = ("inapp", "email", "push", "sms", "webhook")
KEY = "promo.sale"
DAY = 86400
# Around 2026's daylight-saving changes, and an ordinary day.
CLOCKS = tuple(
    datetime.fromisoformat(s).replace(tzinfo=UTC)
    for s in ("2026-03-08T09:30", "2026-03-29T00:30", "2026-11-01T05:30", "2026-06-15T13:00")
)

hhmm = st.sampled_from(("00:00", "07:30", "08:00", "13:00", "22:00", "23:30"))
cap_list = st.lists(
    st.builds(
        lambda n, per: {"count": n, "per": per},
        st.integers(1, 3),
        st.sampled_from((3600, DAY, 7 * DAY)),
    ),
    max_size=2,
)
# What one recipient stored: None (nothing), or a sparse row as the preference page writes it.
stored_choice = st.none() | st.fixed_dictionaries(
    {},
    optional={
        "channels": st.dictionaries(st.sampled_from(CHANNELS), st.booleans(), max_size=3),
        "categories": st.dictionaries(
            st.sampled_from((KEY, "other.key")),
            st.fixed_dictionaries(
                {},
                optional={
                    "enabled": st.booleans(),
                    "channels": st.dictionaries(
                        st.sampled_from(CHANNELS), st.booleans(), max_size=2
                    ),
                    "caps": cap_list,
                },
            ),
            max_size=2,
        ),
        "caps": cap_list,
        "quiet_hours": st.fixed_dictionaries(
            {},
            optional={
                "enabled": st.booleans(),
                "start": hhmm,
                "end": hhmm,
                "timezone": st.sampled_from(ZONES),
                "days": st.lists(
                    st.sampled_from(("mon", "tue", "sat", "sun")), min_size=1, unique=True
                ),
            },
        ),
        "paused_hours": st.integers(-3, 30),
        "digest": st.fixed_dictionaries({}, optional={"enabled": st.booleans(), "at": hhmm}),
        "unsubscribed": st.booleans(),
    },
)
person = st.fixed_dictionaries(
    {
        "zone": st.sampled_from((*ZONES, None)),
        # An index into a few shared choices, so that recipients alike are common.
        "choice": st.integers(0, 3),
        "addresses": st.sets(st.sampled_from(("email", "phone", "push_tokens", "webhook_url"))),
        "activity": st.sampled_from(("active", "sleeping", "churned")),
    }
)
cap_tuple = st.builds(Cap, st.integers(1, 3), st.sampled_from((1800, DAY, 2 * DAY, 7 * DAY)))
rules_of = st.builds(
    policy.Rules,
    key=st.just(KEY),
    kind=st.sampled_from(("promotional", "service", "transactional", "social")),
    priority=st.sampled_from(("critical", "high", "normal", "low")),
    channels=st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True).map(tuple),
    required=st.booleans(),
    caps=st.lists(cap_tuple, max_size=2).map(tuple),
    caps_by_activity=st.lists(
        st.tuples(
            st.sampled_from(("active", "churned")), st.lists(cap_tuple, max_size=1).map(tuple)
        ),
        max_size=2,
        unique_by=lambda pair: pair[0],
    ).map(tuple),
    escalate_after=st.sampled_from((None, 600)),
    global_cap=st.sampled_from((None, True, False)),
)


def _address(field: str, rid: str) -> Any:
    return [f"token-{rid}"] if field == "push_tokens" else f"{field}-{rid}"


def _store(db: Database, people: list[dict[str, Any]], choices: list[Any], at: datetime) -> None:
    with db.session() as session:
        session.execute(delete(Preference))
        session.execute(delete(Recipient))
    with db.session() as session:
        for n, p in enumerate(people):
            rid = f"r-{n:02d}"
            fields = {f: _address(f, rid) for f in p["addresses"]}
            session.add(Recipient(id=rid, timezone=p["zone"], **fields))
            choice = choices[p["choice"]]
            if choice is None:
                continue
            row = dict(choice)
            hours = row.pop("paused_hours", None)
            if hours is not None:
                row["paused_until"] = at + timedelta(hours=hours)
            session.add(Preference(recipient_id=rid, **row))


@pytest.fixture
def two_counters(redis_client: redis.Redis) -> Iterator[tuple[Counters, Counters]]:
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB)
    shared, alone = Counters(client, RedisKeys("shared")), Counters(client, RedisKeys("alone"))
    yield shared, alone
    client.close()


def _seen(checks: list[CapCheck]) -> list[tuple[str, str, str, list[tuple[str, Cap]]]]:
    return [(c.recipient_id, c.member, c.zone, list(c.limits)) for c in checks]


@BOTH
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    people=st.lists(person, min_size=1, max_size=16),
    choices=st.lists(stored_choice, min_size=4, max_size=4),
    rules=rules_of,
    clock=st.sampled_from(CLOCKS),
    shift=st.integers(0, 47),
    earlier=st.lists(st.integers(0, 60), min_size=1, max_size=4),
)
def test_what_is_worked_out_once_per_situation_is_what_each_recipient_would_get(
    db: Database,
    settings: Settings,
    two_counters: tuple[Counters, Counters],
    people: list[dict[str, Any]],
    choices: list[Any],
    rules: policy.Rules,
    clock: datetime,
    shift: int,
    earlier: list[int],
) -> None:
    at = clock + timedelta(minutes=30 * shift)
    _store(db, people, choices, at)
    with db.session() as session:
        recipients = list(session.exec(select(Recipient).order_by(col(Recipient.id))))
        each = store.load_many(session, recipients, settings=settings)
        # As a chunk reads them: beside each recipient, what they stored, in one query.
        query = store.with_stored(
            sa_select(col(Recipient.id), col(Recipient.timezone)), col(Recipient.id)
        )
        read = session.execute(query.order_by(col(Recipient.id))).all()
        shared = store.shared(
            ((r[0], r[1], r[3:] if r[2] is not None else None) for r in read), settings=settings
        )

    # Preferences: resolved once per situation, equal to each recipient's own.
    assert {rid: replace(p, recipient_id=rid) for rid, p in shared.items()} == each

    # Decisions: once per (preferences, addresses), equal to deciding each alone.
    request = policy.Request()
    reach = planning.reachable(policy.candidate_channels(rules, request))
    addresses = {r.id: reach(r) for r in recipients}
    assert all(
        set(addresses[r.id]) == set(planning.addressable(r)) & set(rules.channels)
        for r in recipients
    )
    decided = policy.decide_many(
        rules, request, ((rid, shared[rid], addresses[rid]) for rid in shared), at
    )
    assert decided == {
        rid: policy.decide(rules, request, each[rid], addresses[rid], at) for rid in each
    }

    # Caps: the limits worked out once per (preferences, activity), as `check` says alone.
    activity = {f"r-{n:02d}": p["activity"] for n, p in enumerate(people)}
    together = caps.check_many(rules, 7, ((rid, shared[rid], activity[rid]) for rid in shared))
    alone = [
        found
        for rid in each
        if (found := caps.check(rules, each[rid], 7, activity[rid])) is not None
    ]
    assert _seen(together) == _seen(alone)

    # Counting: shared windows count and refuse exactly as windows worked out per check,
    # after earlier notifications counted `earlier` hours before.
    with_shared, on_their_own = two_counters
    with_shared.client.flushdb()  # one database, two key prefixes
    for counters in two_counters:
        counters.mark_ready(at)
        for member, hours in enumerate(sorted(earlier, reverse=True)):
            before = [CapCheck(c.recipient_id, f"e{member}", c.zone, c.limits) for c in alone]
            counters.admit(before, at - timedelta(hours=hours))
    # Equal limits share one object here even across zones: windows still follow each zone.
    pool: dict[tuple[tuple[str, Cap], ...], list[tuple[str, Cap]]] = {}
    pooled = [
        CapCheck(c.recipient_id, c.member, c.zone, pool.setdefault(tuple(c.limits), list(c.limits)))
        for c in together
    ]
    assert with_shared.admit(pooled, at) == on_their_own.admit(alone, at)
