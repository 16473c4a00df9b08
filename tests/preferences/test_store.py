"""The preference store: defaults resolved, choices merged, and many recipients loaded at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from engine.errors import FieldError
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Category, Preference, Recipient
from preferences import store
from preferences.model import WEEKDAYS, Cap

BOTH_BACKENDS = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", None)


@contextmanager
def counting_queries(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _categories(session: Session) -> dict[str, Category]:
    promo = Category(
        key="promo.flash_sale",
        name="Flash sales",
        kind="promotional",
        priority="normal",
        channels=["push", "inapp", "email"],
        caps=[{"count": 2, "per": 3600}],
    )
    security = Category(
        key="account.security",
        name="Security",
        kind="transactional",
        priority="critical",
        channels=["email", "sms"],
        required=True,
    )
    session.add_all([promo, security])
    return {promo.key: promo, security.key: security}


def test_defaults_for_someone_who_never_chose(settings: Settings) -> None:
    recipient = Recipient(id="u-1", timezone="Asia/Shanghai")
    prefs = store.resolve(recipient, None, settings=settings)
    assert prefs.recipient_id == "u-1"
    assert all(prefs.channels[ch] for ch in ("inapp", "email", "push", "sms", "webhook"))
    assert prefs.caps == (Cap(5, 86400),)
    quiet = prefs.quiet_hours
    assert (quiet.enabled, quiet.start, quiet.end) == (True, time(22), time(8))
    assert quiet.timezone == "Asia/Shanghai"
    assert quiet.days == frozenset(WEEKDAYS)
    assert (prefs.digest.enabled, prefs.digest.at) == (False, time(20))
    assert prefs.paused_until is None
    assert not prefs.unsubscribed
    # Without a recipient zone, the platform's default zone.
    assert store.resolve(None, None, settings=settings, recipient_id="x").quiet_hours.timezone == (
        "UTC"
    )


def test_platform_defaults_come_from_settings() -> None:
    platform = Settings(
        default_quiet_start="21:30",
        default_quiet_end="07:00",
        default_timezone="Europe/Berlin",
        global_cap_per_day=3,
        digest_at="19:00",
    )
    prefs = store.resolve(Recipient(id="u-1"), None, settings=platform)
    assert (prefs.quiet_hours.start, prefs.quiet_hours.end) == (time(21, 30), time(7))
    assert prefs.quiet_hours.timezone == "Europe/Berlin"
    assert prefs.caps == (Cap(3, 86400),)
    assert prefs.digest.at == time(19)


def test_stored_choices_override_only_what_they_name(settings: Settings) -> None:
    stored = Preference(
        recipient_id="u-1",
        channels={"sms": False},
        categories={
            "promo.flash_sale": {"channels": {"email": False}, "caps": [{"count": 1, "per": 86400}]}
        },
        quiet_hours={"start": "23:00", "days": ["sat", "sun"]},
        paused_until=datetime(2030, 1, 1),  # naive, as SQLite gives it back
        digest={"enabled": True},
    )
    prefs = store.resolve(Recipient(id="u-1", timezone="Europe/Berlin"), stored, settings=settings)
    assert prefs.channels["sms"] is False and prefs.channels["email"] is True
    promo = prefs.category("promo.flash_sale")
    assert promo.enabled and promo.channels == {"email": False}
    assert promo.caps == (Cap(1, 86400),)
    assert prefs.caps == (Cap(5, 86400),)
    assert prefs.quiet_hours.start == time(23) and prefs.quiet_hours.end == time(8)
    assert prefs.quiet_hours.timezone == "Europe/Berlin"
    assert prefs.quiet_hours.days == frozenset({"sat", "sun"})
    assert prefs.paused_until == datetime(2030, 1, 1, tzinfo=UTC)
    assert prefs.digest.enabled and prefs.digest.at == time(20)
    assert not prefs.opted_in("promo.flash_sale", "email", required=False)
    assert prefs.opted_in("promo.flash_sale", "push", required=False)
    # No caps at all is a choice too, different from the default.
    assert (
        store.resolve(None, Preference(recipient_id="u-2", caps=[]), settings=settings).caps == ()
    )


def _update(db: Database, rid: str, changes: dict[str, Any]) -> None:
    with db.session() as session:
        store.update(
            session,
            rid,
            PreferencesIn.model_validate(changes),
            categories=store.load_categories(session),
        )


def _load(db: Database, rid: str, settings: Settings) -> dict[str, Any]:
    with db.session() as session:
        recipient = session.get(Recipient, rid)
        assert recipient is not None
        prefs = store.load_one(session, recipient, settings=settings)
        return store.document(prefs, list(store.load_categories(session).values()))


@BOTH_BACKENDS
def test_update_merges_and_a_refused_change_writes_nothing(
    db: Database, settings: Settings
) -> None:
    with db.session() as session:
        _categories(session)
        session.add(Recipient(id="u-1", timezone="Asia/Shanghai"))
    _update(db, "u-1", {"channels": {"sms": False}, "quiet_hours": {"start": "23:00"}})
    _update(
        db,
        "u-1",
        {
            "channels": {"push": False},
            "quiet_hours": {"end": "07:30"},
            "categories": {"promo.flash_sale": {"enabled": False}},
        },
    )
    _update(db, "u-1", {"categories": {"promo.flash_sale": {"channels": {"email": False}}}})
    doc = _load(db, "u-1", settings)
    assert doc["channels"]["sms"] is False and doc["channels"]["push"] is False
    assert doc["channels"]["email"] is True
    assert (doc["quiet_hours"]["start"], doc["quiet_hours"]["end"]) == ("23:00", "07:30")
    promo = doc["categories"]["promo.flash_sale"]
    assert promo["enabled"] is False  # the later channel change kept the earlier switch
    assert promo["channels"] == {"push": True, "inapp": True, "email": False}
    assert promo["default_caps"] == [{"count": 2, "per": "1h"}]

    refusals: list[tuple[dict[str, Any], str]] = [
        ({"channels": {"sms": True}, "categories": {"nope": {"enabled": True}}}, "categories.nope"),
        (
            {"unsubscribed": True, "categories": {"account.security": {"enabled": False}}},
            "categories.account.security.enabled",
        ),
        (
            {"categories": {"account.security": {"channels": {"sms": False}}}},
            "categories.account.security.channels.sms",
        ),
        (
            {"categories": {"promo.flash_sale": {"channels": {"sms": True}}}},
            "categories.promo.flash_sale.channels.sms",
        ),
    ]
    for refused, field in refusals:
        with pytest.raises(FieldError) as caught:
            _update(db, "u-1", refused)
        assert caught.value.field == field
    assert _load(db, "u-1", settings) == doc


@BOTH_BACKENDS
def test_a_category_made_required_later_overrides_an_old_opt_out(
    db: Database, settings: Settings
) -> None:
    with db.session() as session:
        _categories(session)
        session.add(Recipient(id="u-1"))
    _update(db, "u-1", {"categories": {"promo.flash_sale": {"enabled": False}}})
    with db.session() as session:
        promo = session.get(Category, "promo.flash_sale")
        assert promo is not None
        promo.required = True
        session.add(promo)
    doc = _load(db, "u-1", settings)
    assert doc["categories"]["promo.flash_sale"]["enabled"] is True
    assert doc["categories"]["promo.flash_sale"]["required"] is True


@BOTH_BACKENDS
def test_erase_forgets_what_was_chosen(db: Database, settings: Settings) -> None:
    with db.session() as session:
        session.add(Recipient(id="u-1"))
    _update(db, "u-1", {"unsubscribed": True})
    assert _load(db, "u-1", settings)["unsubscribed"] is True
    with db.session() as session:
        store.erase(session, "u-1")
        store.erase(session, "never-stored")
    assert _load(db, "u-1", settings)["unsubscribed"] is False
    with db.session() as session:
        assert session.get(Preference, "u-1") is None


def _stored_for(index: int) -> Preference | None:
    """A realistic mix: most people never change anything."""
    rid = f"r-{index:05d}"
    if index % 2 == 0:
        return None
    if index % 3 == 0:
        return Preference(recipient_id=rid, channels={"sms": False, "push": False})
    if index % 5 == 0:
        return Preference(recipient_id=rid, unsubscribed=True)
    if index % 7 == 0:
        return Preference(
            recipient_id=rid,
            quiet_hours={"start": "21:00", "end": "09:00", "timezone": "Europe/Paris"},
            caps=[{"count": 2, "per": 86400}],
        )
    return Preference(
        recipient_id=rid,
        categories={"promo.flash_sale": {"enabled": False}},
        digest={"enabled": True},
    )


@BOTH_BACKENDS
def test_load_many_resolves_thousands_in_one_query(db: Database, settings: Settings) -> None:
    count = 2000
    people = [Recipient(id=f"r-{i:05d}", timezone=ZONES[i % len(ZONES)]) for i in range(count)]
    with db.session() as session:
        session.add_all(people)
        session.add_all(p for i in range(count) if (p := _stored_for(i)) is not None)
    with db.session() as session:
        recipients = list(session.exec(select(Recipient)))
        with counting_queries(db) as statements:
            loaded = store.load_many(session, recipients, settings=settings)
    assert len(statements) == 1, statements
    assert len(loaded) == count

    for i in range(count):
        rid = f"r-{i:05d}"
        prefs = loaded[rid]
        assert prefs.recipient_id == rid
        stored = _stored_for(i)
        zone = ZONES[i % len(ZONES)] or "UTC"
        if stored is None:
            assert prefs == store.resolve(Recipient(id=rid, timezone=zone), None, settings=settings)
            assert prefs.quiet_hours.timezone == zone
            assert prefs.opted_in("promo.flash_sale", "sms", required=False)
        elif i % 3 == 0:
            assert not prefs.opted_in("promo.flash_sale", "sms", required=False)
            assert not prefs.opted_in("promo.flash_sale", "push", required=False)
            assert prefs.opted_in("promo.flash_sale", "email", required=False)
        elif i % 5 == 0:
            assert not prefs.opted_in("promo.flash_sale", "inapp", required=False)
            assert prefs.opted_in("account.security", "email", required=True)
        elif i % 7 == 0:
            assert prefs.quiet_hours.timezone == "Europe/Paris"
            assert prefs.quiet_hours.start == time(21)
            assert prefs.caps == (Cap(2, 86400),)
        else:
            assert not prefs.opted_in("promo.flash_sale", "email", required=False)
            assert prefs.opted_in("order.delivered", "email", required=False)
            assert prefs.digest.enabled
            assert prefs.quiet_hours.timezone == zone


@lru_cache(maxsize=1)
def _audience() -> tuple[Recipient, ...]:
    """Just over ten thousand recipients, built once (building a row object is not free)."""
    return tuple(Recipient(id=f"r-{i:05d}") for i in range(10_001))


@BOTH_BACKENDS
def test_load_many_needs_one_query_per_ten_thousand(db: Database, settings: Settings) -> None:
    with db.session() as session:
        session.add(Preference(recipient_id="r-10000", unsubscribed=True))
    with db.session() as session, counting_queries(db) as statements:
        loaded = store.load_many(session, _audience(), settings=settings)
    assert len(statements) == 2
    assert len(loaded) == 10_001
    assert loaded["r-10000"].unsubscribed
    assert not loaded["r-00000"].unsubscribed
    with db.session() as session, counting_queries(db) as statements:
        assert store.load_many(session, [], settings=settings) == {}
    assert len(statements) == 0
