"""Reading and writing preferences, with the platform's defaults resolved.

Stored preferences are sparse (only what a recipient changed), so a platform that
changes a default changes it for everyone who did not choose otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

import orjson
from sqlalchemy import Select, Text, cast
from sqlmodel import Session, col, select

from channels.base import CHANNEL_NAMES
from engine.errors import FieldError
from engine.schemas.common import CapIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store import bulk, outbox
from engine.store.models import Category, Delivery, Preference, Recipient, Unsubscribe
from engine.timeutil import aware, format_duration, iso, now
from preferences.model import (
    WEEKDAYS,
    Cap,
    CategoryPreference,
    Digest,
    EffectivePreferences,
    QuietHours,
    parse_hhmm,
)

USER_CHANNELS = tuple(name for name in CHANNEL_NAMES if name != "log")


def _caps(raw: Iterable[Mapping[str, int]] | None) -> tuple[Cap, ...]:
    return tuple(Cap(count=int(c["count"]), per=int(c["per"])) for c in raw or ())


def resolve(
    recipient: Recipient | None,
    stored: Preference | None,
    *,
    settings: Settings,
    recipient_id: str | None = None,
) -> EffectivePreferences:
    """Effective preferences from what was stored plus the platform defaults."""
    rid = recipient.id if recipient else recipient_id or ""
    home = recipient.timezone if recipient else None
    if stored is None:  # most recipients: the defaults, shared (they are read-only)
        return replace(_defaults_for(home, settings), recipient_id=rid)
    return _effective(rid, home, stored, settings)


def _defaults_for(home: str | None, settings: Settings) -> EffectivePreferences:
    return _defaults(
        home or settings.default_timezone,
        settings.global_cap_per_day,
        settings.default_quiet_start,
        settings.default_quiet_end,
        settings.digest_at,
    )


class _Stored(Protocol):
    """What a recipient stored (a `Preference` row, or one read as values)."""

    @property
    def channels(self) -> dict[str, bool] | None: ...
    @property
    def categories(self) -> dict[str, dict[str, Any]] | None: ...
    @property
    def caps(self) -> list[dict[str, int]] | None: ...
    @property
    def quiet_hours(self) -> dict[str, Any] | None: ...
    @property
    def paused_until(self) -> datetime | None: ...
    @property
    def digest(self) -> dict[str, Any] | None: ...
    @property
    def unsubscribed(self) -> bool: ...


def _effective(
    rid: str, home: str | None, stored: _Stored, settings: Settings
) -> EffectivePreferences:
    """What `stored` says over the platform defaults, for a recipient whose own zone is
    `home`."""
    channels = dict.fromkeys(CHANNEL_NAMES, True)
    channels.update(stored.channels or {})
    categories = {
        key: CategoryPreference(
            enabled=bool(value.get("enabled", True)),
            channels=dict(value.get("channels") or {}),
            caps=_caps(value.get("caps")),
        )
        for key, value in (stored.categories or {}).items()
    }
    caps = (
        _caps(stored.caps)
        if stored.caps is not None
        else (Cap(settings.global_cap_per_day, 86400),)
    )
    quiet = stored.quiet_hours or {}
    zone = quiet.get("timezone") or home
    quiet_hours = QuietHours(
        enabled=quiet.get("enabled") is not False,  # null is the default: on
        start=parse_hhmm(quiet.get("start") or settings.default_quiet_start),
        end=parse_hhmm(quiet.get("end") or settings.default_quiet_end),
        timezone=zone or settings.default_timezone,
        days=frozenset(WEEKDAYS if quiet.get("days") is None else quiet["days"]),
    )
    digest = stored.digest or {}
    return EffectivePreferences(
        recipient_id=rid,
        channels=channels,
        categories=categories,
        caps=caps,
        quiet_hours=quiet_hours,
        paused_until=aware(stored.paused_until),
        digest=Digest(
            enabled=bool(digest.get("enabled", False)),
            at=parse_hhmm(digest.get("at") or settings.digest_at),
        ),
        unsubscribed=bool(stored.unsubscribed),
    )


@functools.lru_cache(maxsize=256)
def _defaults(
    zone: str, cap_per_day: int, quiet_start: str, quiet_end: str, digest_at: str
) -> EffectivePreferences:
    """The preferences of a recipient in `zone` who stored nothing (for no one in particular)."""
    return EffectivePreferences(
        recipient_id="",
        channels=MappingProxyType(dict.fromkeys(CHANNEL_NAMES, True)),
        categories=MappingProxyType({}),
        caps=(Cap(cap_per_day, 86400),),
        quiet_hours=QuietHours(True, parse_hhmm(quiet_start), parse_hhmm(quiet_end), zone),
        paused_until=None,
        digest=Digest(enabled=False, at=parse_hhmm(digest_at)),
        unsubscribed=False,
    )


def load_many(
    session: Session, recipients: Sequence[Recipient], *, settings: Settings
) -> dict[str, EffectivePreferences]:
    """Effective preferences of many recipients, with one query for what they stored."""
    ids = [r.id for r in recipients]
    stored: dict[str, Preference] = {}
    for start in range(0, len(ids), 10_000):
        rows = bulk.read(
            session, Preference, col(Preference.recipient_id).in_(ids[start : start + 10_000])
        )
        stored.update((p.recipient_id, p) for p in rows)
    return {r.id: resolve(r, stored.get(r.id), settings=settings) for r in recipients}


# What a recipient stored, read as it is written (JSON as text), with whose row it is
# (None when they stored nothing): recipients who chose alike have equal rows, so a
# chunk resolves each distinct row once.
STORED: tuple[Any, ...] = (
    col(Preference.recipient_id).label("stored_by"),
    cast(col(Preference.channels), Text).label("stored_channels"),
    cast(col(Preference.categories), Text).label("stored_categories"),
    cast(col(Preference.caps), Text).label("stored_caps"),
    cast(col(Preference.quiet_hours), Text).label("stored_quiet_hours"),
    col(Preference.paused_until).label("stored_paused_until"),
    cast(col(Preference.digest), Text).label("stored_digest"),
    col(Preference.unsubscribed).label("stored_unsubscribed"),
)
# A row of `STORED` without its first column.
Written = tuple[str | None, str | None, str | None, str | None, datetime | None, str | None, bool]


def with_stored(query: Select[Any], recipient_id: Any) -> Select[Any]:
    """`query` with `STORED` beside each recipient it reads, `recipient_id` naming them:
    one query reads recipients and their choices together."""
    return query.add_columns(*STORED).outerjoin(
        Preference, col(Preference.recipient_id) == recipient_id
    )


class _Parsed:
    """A stored row read as text, its JSON parsed (`_Stored`)."""

    def __init__(self, row: Written) -> None:
        channels, categories, caps, quiet_hours, paused_until, digest, unsubscribed = row
        self.channels = _json(channels)
        self.categories = _json(categories)
        self.caps = _json(caps)
        self.quiet_hours = _json(quiet_hours)
        self.paused_until = paused_until
        self.digest = _json(digest)
        self.unsubscribed = bool(unsubscribed)


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def shared(
    recipients: Iterable[tuple[str, str | None, Written | None]], *, settings: Settings
) -> dict[str, EffectivePreferences]:
    """Effective preferences of many (recipient id, own time zone, what they stored or
    None), one object per distinct situation: those who stored the same choices (or none)
    and live in the same zone share it, resolved once.

    The objects are for no one in particular (`recipient_id` is ""): a planner asks each
    question once per object and applies the answer to everyone who shares it.
    """
    situations: dict[tuple[str | None, Written | None], EffectivePreferences] = {}
    out: dict[str, EffectivePreferences] = {}
    for rid, home, written in recipients:
        key = (home, written)
        found = situations.get(key)
        if found is None:
            found = situations[key] = (
                _defaults_for(home, settings)
                if written is None
                else _effective("", home, _Parsed(written), settings)
            )
        out[rid] = found
    return out


def load_one(session: Session, recipient: Recipient, *, settings: Settings) -> EffectivePreferences:
    """Effective preferences of one recipient."""
    return resolve(recipient, session.get(Preference, recipient.id), settings=settings)


def _cap_doc(caps: Iterable[Cap]) -> list[dict[str, Any]]:
    return [{"count": c.count, "per": format_duration(c.per)} for c in caps]


def document(prefs: EffectivePreferences, categories: Sequence[Category]) -> dict[str, Any]:
    """The preferences as the API and the pages show them: every default filled in."""
    cats: dict[str, Any] = {}
    for category in categories:
        choice = prefs.category(category.key)
        cats[category.key] = {
            "enabled": True if category.required else choice.enabled,
            "required": category.required,
            "channels": {
                ch: True if category.required else choice.channels.get(ch, True)
                for ch in category.channels
            },
            "caps": _cap_doc(choice.caps),
            "default_caps": [
                {"count": c["count"], "per": format_duration(c["per"])} for c in category.caps
            ],
        }
    quiet = prefs.quiet_hours
    return {
        "channels": {ch: prefs.channels.get(ch, True) for ch in USER_CHANNELS},
        "categories": cats,
        "caps": _cap_doc(prefs.caps),
        "quiet_hours": {
            "enabled": quiet.enabled,
            "start": quiet.start.strftime("%H:%M"),
            "end": quiet.end.strftime("%H:%M"),
            "timezone": quiet.timezone,
            "days": [d for d in WEEKDAYS if d in quiet.days],
        },
        "paused_until": iso(prefs.paused_until),
        "digest": {"enabled": prefs.digest.enabled, "at": prefs.digest.at.strftime("%H:%M")},
        "unsubscribed": prefs.unsubscribed,
    }


def _stored_caps(caps: list[CapIn]) -> list[dict[str, int]]:
    return [{"count": c.count, "per": c.per} for c in caps]


def update(
    session: Session,
    recipient_id: str,
    changes: PreferencesIn,
    *,
    categories: Mapping[str, Category],
    at: datetime | None = None,
    delivery_id: int | None = None,
) -> Preference:
    """Merge `changes` into what the recipient stored; keys left out keep their value,
    and a null puts a field (or a whole section) back to the platform default.

    Unsubscribing (from not unsubscribed) is recorded as an `Unsubscribe` naming
    `delivery_id`, the message whose link was used (see `source_delivery`), if any.

    What is stored reads back as written (`document`). Raises `FieldError`, and writes
    nothing, for an unknown category, an attempt to switch off a required one, and
    quiet hours that are on but could never be quiet (no day, or start equal to end).
    """
    row = _row_to_change(session, recipient_id)
    given = changes.model_fields_set
    if "channels" in given:
        row.channels = (
            None
            if changes.channels is None
            else {**(row.channels or {}), **{str(k): v for k, v in changes.channels.items()}}
        )
    if "categories" in given:
        row.categories = (
            None
            if changes.categories is None
            else _merge_categories(row.categories or {}, changes, categories)
        )
    if "caps" in given:
        row.caps = None if changes.caps is None else _stored_caps(changes.caps)
    if "quiet_hours" in given:
        row.quiet_hours = (
            None
            if changes.quiet_hours is None
            else _sparse(row.quiet_hours, changes.quiet_hours.model_dump(exclude_unset=True))
        )
        _check_quiet(row.quiet_hours or {})
    if "paused_until" in given:
        row.paused_until = changes.paused_until
    if "digest" in given:
        row.digest = (
            None
            if changes.digest is None
            else _sparse(row.digest, changes.digest.model_dump(exclude_unset=True))
        )
    if "unsubscribed" in given:
        if changes.unsubscribed and not row.unsubscribed:
            session.add(
                Unsubscribe(
                    recipient_id=recipient_id, delivery_id=delivery_id, created_at=at or now()
                )
            )
            outbox.record(
                session, outbox.UNSUBSCRIBED, recipient_id=recipient_id, delivery_id=delivery_id
            )
        row.unsubscribed = bool(changes.unsubscribed)
    row.updated_at = at or now()
    session.add(row)
    return row


def source_delivery(session: Session, recipient_id: str, given: str | None) -> int | None:
    """The delivery an unsubscribe link says it came with (`given`, its `?d=`), when that
    delivery is the recipient's own; None for a link that names none, or names a
    delivery that is not theirs (the id is not signed: it may have been edited)."""
    if given is None or not (given.isascii() and given.isdigit()) or int(given) >= 2**63:
        return None
    delivery_id = int(given)
    owner = session.exec(select(Delivery.recipient_id).where(col(Delivery.id) == delivery_id))
    return delivery_id if owner.first() == recipient_id else None


def _row_to_change(session: Session, recipient_id: str) -> Preference:
    """The recipient's row, created if missing and locked until the transaction ends.

    Two writes at once (a page save and a one-click unsubscribe, two API calls) take
    turns instead of both creating the row (one would fail) or both merging into the
    same old copy (one change would be lost): the row is inserted if absent, then read
    `FOR UPDATE` (SQLite's single writer already holds its lock after the insert).
    """
    stamp = now()
    empty = {"recipient_id": recipient_id, "unsubscribed": False, "updated_at": stamp}
    bulk.insert_ignore(session, Preference, [empty], conflict=("recipient_id",))
    row = session.get(Preference, recipient_id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


def _sparse(stored: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """`stored` with `changes` applied: a null drops the key, so the default applies."""
    out = {**(stored or {}), **changes}
    return {key: value for key, value in out.items() if value is not None}


def _merge_categories(
    stored: Mapping[str, Mapping[str, Any]],
    changes: PreferencesIn,
    categories: Mapping[str, Category],
) -> dict[str, dict[str, Any]]:
    merged = {key: dict(value) for key, value in stored.items()}
    for key, choice in (changes.categories or {}).items():
        category = categories.get(key)
        if category is None:
            raise FieldError(f"categories.{key}", f"no category {key!r}")
        current = merged.setdefault(key, {})
        given = choice.model_fields_set
        if "enabled" in given:
            if category.required and choice.enabled is False:
                raise FieldError(
                    f"categories.{key}.enabled", "a required category cannot be switched off"
                )
            current["enabled"] = choice.enabled
        if "channels" in given and choice.channels is not None:
            for channel, on in choice.channels.items():
                if channel not in category.channels:
                    raise FieldError(
                        f"categories.{key}.channels.{channel}",
                        f"category {key!r} is not sent by {channel}",
                    )
                if category.required and not on:
                    raise FieldError(
                        f"categories.{key}.channels.{channel}",
                        "a required category cannot be switched off",
                    )
            current["channels"] = {**current.get("channels", {}), **choice.channels}
        elif "channels" in given:
            current["channels"] = None
        if "caps" in given:
            current["caps"] = None if choice.caps is None else _stored_caps(choice.caps)
        merged[key] = {name: value for name, value in current.items() if value is not None}
    return merged


def _check_quiet(quiet: Mapping[str, Any]) -> None:
    """Quiet hours that are on must be able to be quiet: what is read back is enforced."""
    if quiet.get("enabled") is False:
        return
    if quiet.get("days") == []:
        raise FieldError(
            "quiet_hours.days", "pick at least one day, or turn quiet hours off (enabled: false)"
        )
    if quiet.get("start") is not None and quiet.get("start") == quiet.get("end"):
        raise FieldError("quiet_hours.end", "quiet hours cannot start and end at the same time")


# After a 👎 a recipient's cap for that category tightens one step at a time.
CAP_STEPS = ({"count": 3, "per": 604800}, {"count": 1, "per": 604800}, {"count": 1, "per": 2592000})


def lower_cap(session: Session, recipient_id: str, category_key: str) -> dict[str, int] | None:
    """Tighten the recipient's own cap for a category after a 👎; None for required ones.

    Returns the new cap ({"count", "per" seconds}). The preference page then suggests
    switching the category off altogether.
    """
    category = session.get(Category, category_key)
    if category is None or category.required:
        return None
    row = _row_to_change(session, recipient_id)
    choices = {key: dict(value) for key, value in (row.categories or {}).items()}
    current = choices.setdefault(category_key, {})
    rate = min((c["count"] / c["per"] for c in current.get("caps") or []), default=None)
    step = next(
        (s for s in CAP_STEPS if rate is None or s["count"] / s["per"] < rate), CAP_STEPS[-1]
    )
    current["caps"] = [dict(step)]
    row.categories = choices
    row.updated_at = now()
    session.add(row)
    return dict(step)


def erase(session: Session, recipient_id: str) -> None:
    """Forget a recipient's preferences."""
    row = session.get(Preference, recipient_id)
    if row is not None:
        session.delete(row)


def load_categories(session: Session) -> dict[str, Category]:
    """Every category by key."""
    return {c.key: c for c in session.exec(select(Category).order_by(col(Category.key)))}
