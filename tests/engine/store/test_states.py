"""The states module: every fate the rules decide is a status of the enum with a reason
that goes with it, the derived sets sort every status as the product describes it, and
the columns store exactly the text the product always stored."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import StatementError
from sqlmodel import col, select

from engine.pipeline import policy
from engine.pipeline.policy import Decision, Previous, Request, Rules
from engine.settings import Settings
from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Delivery, DeliveryEvent
from engine.store.states import (
    ARRIVED,
    HOLDS,
    IN_FLIGHT,
    PENDING,
    PROGRESS,
    REACHED,
    SEEN,
    SETTLED,
    SUPPRESSIONS,
    UNSETTLED,
    WENT_OUT,
    DeliveryStatus,
    Engagement,
    EventStatus,
    Reason,
)
from preferences.model import Cap, CategoryPreference, Digest, EffectivePreferences, QuietHours
from preferences.store import resolve

CHANNELS = ("inapp", "push", "email", "sms", "webhook")
START = datetime(2026, 11, 20, tzinfo=UTC)
BOTH_BACKENDS = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


def _defaults() -> EffectivePreferences:
    return resolve(None, None, settings=Settings(default_timezone="UTC"), recipient_id="u-1")


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[Rules, Request, EffectivePreferences, tuple[str, ...], datetime]:
    """A category, a request, a recipient's preferences and addresses, and a moment."""
    channels = tuple(draw(st.lists(st.sampled_from(CHANNELS), min_size=1, unique=True)))
    rules = Rules(
        key="cat",
        kind=draw(st.sampled_from(("transactional", "service", "promotional", "social"))),
        priority=draw(st.sampled_from(("critical", "high", "normal", "low"))),
        channels=channels,
        required=draw(st.booleans()),
        caps=(Cap(1, 3600),),
        over_cap=draw(st.sampled_from(("drop", "defer"))),
        escalate_after=draw(st.none() | st.integers(1, 86400)),
    )
    at = START + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    expires = draw(st.none() | st.integers(-120, 120).map(lambda m: at + timedelta(minutes=m)))
    subset = draw(st.none() | st.lists(st.sampled_from(channels), min_size=1, unique=True))
    request = Request(channels=tuple(subset) if subset else None, expires_at=expires)
    base = _defaults()
    switched = draw(st.dictionaries(st.sampled_from(CHANNELS), st.booleans()))
    prefs = EffectivePreferences(
        recipient_id="u-1",
        channels={**base.channels, **switched},
        categories={"cat": CategoryPreference(enabled=draw(st.booleans()))},
        caps=base.caps,
        quiet_hours=QuietHours(
            enabled=draw(st.booleans()),
            start=time(draw(st.integers(0, 23))),
            end=time(draw(st.integers(0, 23))),
            timezone=draw(st.sampled_from(("UTC", "Asia/Shanghai", "America/New_York"))),
        ),
        paused_until=draw(st.none() | st.integers(-48, 48).map(lambda h: at + timedelta(hours=h))),
        digest=Digest(enabled=draw(st.booleans()), at=time(draw(st.integers(0, 23)))),
        unsubscribed=draw(st.booleans()),
    )
    addressable = tuple(draw(st.lists(st.sampled_from(CHANNELS), unique=True)))
    return rules, request, prefs, addressable, at


def _well_formed(decision: Decision, at: datetime) -> None:
    """A fate as the product describes it: queued with no reason, scheduled with a later
    due time and why, or suppressed with why."""
    assert isinstance(decision.status, DeliveryStatus)
    if decision.status == DeliveryStatus.QUEUED:
        assert decision.reason is None and decision.due_at is None
    elif decision.status == DeliveryStatus.SCHEDULED:
        assert decision.reason in HOLDS, decision
        assert decision.due_at is not None and decision.due_at > at
    else:
        assert decision.status == DeliveryStatus.SUPPRESSED, decision
        assert decision.reason in SUPPRESSIONS and decision.due_at is None, decision


@given(situation=situations(), earlier=st.lists(st.sampled_from(list(DeliveryStatus)), max_size=3))
def test_every_fate_the_rules_decide_is_a_status_with_a_reason_that_goes_with_it(
    situation: tuple[Rules, Request, EffectivePreferences, tuple[str, ...], datetime],
    earlier: list[DeliveryStatus],
) -> None:
    rules, request, prefs, addressable, at = situation
    decided = policy.decide(rules, request, prefs, addressable, at)
    for decision in decided:
        _well_formed(decision, at)
    for channel in rules.channels:
        _well_formed(policy.recheck(rules, request, prefs, addressable, channel, at), at)
    for decision in policy.over_cap(rules, decided, at + timedelta(hours=1)):
        _well_formed(decision, at)
    previous = [Previous(i, status) for i, status in enumerate(earlier)]
    collapsed, replaced = policy.collapse(decided, previous)
    for decision in collapsed:
        _well_formed(decision, at)
    # Only a held predecessor is replaced; one that went out makes this a duplicate.
    assert {previous[i].status for i in replaced} <= PENDING
    if any(p.status in WENT_OUT for p in previous):
        assert all(d.status == DeliveryStatus.SUPPRESSED for d in collapsed)


def test_the_derived_sets_sort_every_status_as_the_product_describes_it() -> None:
    # Every delivery is waiting (held or in flight) or settled, never both.
    assert set(DeliveryStatus) == UNSETTLED | SETTLED and not UNSETTLED & SETTLED
    assert PENDING | IN_FLIGHT == UNSETTLED
    # Settled: it reached its recipient, or was suppressed, or failed.
    assert REACHED | {DeliveryStatus.SUPPRESSED, DeliveryStatus.FAILED} == SETTLED
    # The progress order starts where a delivery is handed over and ends at a conversion.
    assert PROGRESS[0] == DeliveryStatus.QUEUED and PROGRESS[-1] == DeliveryStatus.CONVERTED
    assert frozenset(PROGRESS) == WENT_OUT == IN_FLIGHT | REACHED
    # What a recipient does with a message is a status it moves the delivery to, a seen one.
    assert {DeliveryStatus(e) for e in Engagement} == SEEN <= ARRIVED <= REACHED
    # The history records every status a delivery settles or waits in, and retries.
    assert set(EventStatus) == (set(DeliveryStatus) - {DeliveryStatus.SENDING}) | {"retrying"}
    # Every reason explains a hold or a suppression; pause and caps can do either.
    assert set(Reason) == HOLDS | SUPPRESSIONS
    assert {Reason.PAUSED, Reason.CAPPED} == HOLDS & SUPPRESSIONS


def _delivery(status: DeliveryStatus | str, reason: Reason | str | None, n: int = 1) -> Delivery:
    return Delivery(
        notification_id=n,
        recipient_id="u-1",
        channel="email",
        category="cat",
        status=status,  # type: ignore[arg-type]
        reason=reason,  # type: ignore[arg-type]
    )


@BOTH_BACKENDS
def test_statuses_and_reasons_are_stored_as_their_text_and_read_back_as_members(
    db: Database,
) -> None:
    reasons: list[Reason | None] = [*Reason, None]
    with db.session() as session:
        for i, status in enumerate(DeliveryStatus):
            session.add(_delivery(status, reasons[i % len(reasons)], n=i))
            session.flush()
        bulk.add_events(
            session,
            [
                {"delivery_id": 1, "status": s, "reason": r, "at": START}
                for s, r in zip(EventStatus, reasons, strict=False)
            ],
        )
    with db.session() as session:
        stored = session.execute(text("SELECT status, reason FROM deliveries ORDER BY id")).all()
        assert [tuple(row) for row in stored] == [
            (s.value, None if r is None else r.value)
            for s, r in zip(DeliveryStatus, reasons, strict=False)
        ]
        assert [type(row[0]) for row in stored] == [str] * len(DeliveryStatus)
        events = session.execute(text("SELECT status FROM delivery_events ORDER BY id")).all()
        assert [row[0] for row in events] == [s.value for s in EventStatus]
        loaded = session.exec(select(Delivery).order_by(col(Delivery.id))).all()
        assert [d.status for d in loaded] == list(DeliveryStatus)
        assert all(type(d.status) is DeliveryStatus for d in loaded)
        read = session.exec(select(DeliveryEvent)).all()
        assert all(type(e.status) is EventStatus for e in read)


@BOTH_BACKENDS
@pytest.mark.parametrize(
    ("status", "reason"),
    [("delivred", None), ("suppressed", "opted-out"), ("retrying", None)],
)
def test_a_status_or_reason_outside_its_enum_is_refused_before_it_is_stored(
    db: Database, status: str, reason: str | None
) -> None:
    refused = pytest.raises(StatementError, match="is not among the defined enum values")
    with refused, db.session() as session:
        session.add(_delivery(status, reason))
    # The bulk writer converts through the same column types, before the driver sees a row.
    refused_in_bulk = pytest.raises(LookupError, match="is not among the defined enum values")
    with refused_in_bulk, db.session() as session:
        bulk.add_events(
            session, [{"delivery_id": 1, "status": "sending", "reason": None, "at": START}]
        )
    with db.session() as session:
        assert session.execute(text("SELECT count(*) FROM deliveries")).scalar_one() == 0
        assert session.execute(text("SELECT count(*) FROM delivery_events")).scalar_one() == 0
