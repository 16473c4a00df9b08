"""The preference center's form: what it shows, reading a post back, and what changed.

A post is compared with what the recipient has now, and only the differences are
written, so defaults the recipient never touched stay platform defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from channels.base import ADDRESS_FIELDS
from engine.catalog.categories import description_in, name_in
from engine.schemas.common import KINDS
from engine.schemas.preferences import PreferencesIn
from engine.store.models import Category, Recipient
from preferences.model import WEEKDAYS, Cap, EffectivePreferences
from preferences.store import USER_CHANNELS

PERIODS = (3600, 86400, 604800)
MAX_COUNT = 1000
MAX_PAUSE_DAYS = 366
TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
ZONE_REGIONS = (
    "Africa",
    "America",
    "Antarctica",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@dataclass(frozen=True)
class CategoryRow:
    """One category as the page lists it."""

    key: str
    name: str
    description: str | None
    kind: str
    required: bool
    channels: tuple[str, ...]
    default_caps: tuple[Cap, ...]


@dataclass(frozen=True)
class Layout:
    """The channels and categories the page shows this recipient, grouped by kind."""

    channels: tuple[str, ...]
    groups: tuple[tuple[str, tuple[CategoryRow, ...]], ...]

    def rows(self) -> Iterator[CategoryRow]:
        for _, rows in self.groups:
            yield from rows


def layout(
    recipient: Recipient, categories: Iterable[Category], locale: str, activity: str | None = None
) -> Layout:
    """Channels the recipient can be reached on (the inbox always), categories by kind,
    named and described in `locale`, each with the caps the platform holds this recipient
    to: the category's own, and those it sets for the recipient's `activity` (`active`,
    `sleeping`, `churned`)."""
    reachable = tuple(
        ch
        for ch in USER_CHANNELS
        if (address := ADDRESS_FIELDS.get(ch)) is None or getattr(recipient, address, None)
    )
    rows = [
        CategoryRow(
            key=c.key,
            name=name_in(c, locale),
            description=description_in(c, locale),
            kind=c.kind,
            required=c.required,
            channels=tuple(ch for ch in c.channels if ch in reachable),
            default_caps=tuple(
                Cap(int(cap["count"]), int(cap["per"]))
                for cap in (*c.caps, *(c.caps_by_activity or {}).get(activity or "", ()))
            ),
        )
        for c in categories
    ]
    order = {kind: i for i, kind in enumerate(KINDS)}
    kinds = sorted({r.kind for r in rows}, key=lambda k: (order.get(k, len(order)), k))
    groups = tuple(
        (
            kind,
            tuple(sorted((r for r in rows if r.kind == kind), key=lambda r: (r.required, r.name))),
        )
        for kind in kinds
    )
    return Layout(channels=reachable, groups=groups)


@dataclass
class CapField:
    """The first cap as two inputs; further caps (set through the API) are kept as they are."""

    count: str = ""
    per: str = "86400"
    kept: tuple[Cap, ...] = ()

    @classmethod
    def of(cls, caps: Sequence[Cap]) -> CapField:
        if not caps:
            return cls()
        return cls(str(caps[0].count), str(caps[0].per), tuple(caps[1:]))

    def caps(self) -> list[Cap]:
        first = [Cap(int(self.count), int(self.per))] if self.count else []
        return first + list(self.kept)


@dataclass
class CategoryState:
    enabled: bool
    channels: dict[str, bool]
    cap: CapField


@dataclass
class FormState:
    """Every input of the form, as text and booleans, before or after a post."""

    channels: dict[str, bool]
    categories: dict[str, CategoryState]
    cap: CapField
    quiet_enabled: bool
    quiet_start: str
    quiet_end: str
    quiet_timezone: str
    quiet_days: list[str]
    pause_until: str
    digest_enabled: bool
    digest_at: str
    unsubscribed: bool = False
    periods: tuple[int, ...] = field(default=PERIODS)


def current(prefs: EffectivePreferences, view: Layout, *, at: datetime) -> FormState:
    """The form filled in with what the recipient has now."""
    quiet = prefs.quiet_hours
    pause = ""
    if (until := prefs.paused_at(at)) is not None:
        pause = until.astimezone(ZoneInfo(quiet.timezone)).date().isoformat()
    categories = {}
    for row in view.rows():
        choice = prefs.category(row.key)
        categories[row.key] = CategoryState(
            enabled=row.required or choice.enabled,
            channels={ch: row.required or choice.channels.get(ch, True) for ch in row.channels},
            cap=CapField.of(choice.caps),
        )
    state = FormState(
        channels={ch: prefs.channels.get(ch, True) for ch in view.channels},
        categories=categories,
        cap=CapField.of(prefs.caps),
        quiet_enabled=quiet.enabled,
        quiet_start=quiet.start.strftime("%H:%M"),
        quiet_end=quiet.end.strftime("%H:%M"),
        quiet_timezone=quiet.timezone,
        quiet_days=[d for d in WEEKDAYS if d in quiet.days],
        pause_until=pause,
        digest_enabled=prefs.digest.enabled,
        digest_at=prefs.digest.at.strftime("%H:%M"),
        unsubscribed=prefs.unsubscribed,
    )
    extra = {int(s.cap.per) for s in categories.values()} | {int(state.cap.per)}
    state.periods = tuple(sorted(set(PERIODS) | extra))
    return state


def submitted(
    fields: Mapping[str, str], days: Sequence[str], view: Layout, before: FormState
) -> FormState:
    """The form as posted; an unticked checkbox is not sent, so absent means off."""

    def on(name: str) -> bool:
        return name in fields

    def cap(prefix: str, old: CapField) -> CapField:
        return CapField(
            fields.get(f"{prefix}cap_count", "").strip(),
            fields.get(f"{prefix}cap_per", old.per).strip(),
            old.kept,
        )

    categories = {}
    for row in view.rows():
        old = before.categories[row.key]
        if row.required:
            categories[row.key] = old
            continue
        prefix = f"cat.{row.key}."
        categories[row.key] = CategoryState(
            enabled=on(prefix + "enabled"),
            channels={ch: on(f"{prefix}ch.{ch}") for ch in row.channels},
            cap=cap(prefix, old.cap),
        )
    quiet, digest = on("quiet_enabled"), on("digest_enabled")

    def text(name: str, *, needed: bool) -> str:
        # A blank input of a switched-off feature keeps its value rather than failing.
        value = fields.get(name, "").strip()
        return value if value or needed else str(getattr(before, name))

    return replace(
        before,
        channels={ch: on(f"channel.{ch}") for ch in view.channels},
        categories=categories,
        cap=cap("", before.cap),
        quiet_enabled=quiet,
        quiet_start=text("quiet_start", needed=quiet),
        quiet_end=text("quiet_end", needed=quiet),
        quiet_timezone=text("quiet_timezone", needed=True),
        quiet_days=[d for d in WEEKDAYS if d in days] or ([] if quiet else before.quiet_days),
        pause_until=fields.get("pause_until", "").strip(),
        digest_enabled=digest,
        digest_at=text("digest_at", needed=digest),
    )


@dataclass(frozen=True)
class Problem:
    """A validation message (an `i18n` key and its values) for one input."""

    key: str
    params: Mapping[str, str] = field(default_factory=dict)


def clean_time(value: str) -> str | None:
    """`HH:MM` for a time of day typed as `8:00`, `08:00` or `08:00:00`; None if it is not one."""
    match = TIME.match(value)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return f"{int(match.group(1)):02d}:{match.group(2)}"


def _time_problem(value: str) -> Problem | None:
    if not value:
        return Problem("invalid.time_empty")
    return None if clean_time(value) else Problem("invalid.time", {"value": value})


def _cap_problems(prefix: str, cap: CapField, periods: Sequence[int]) -> dict[str, Problem]:
    out: dict[str, Problem] = {}
    if cap.count and not (cap.count.isdigit() and 1 <= int(cap.count) <= MAX_COUNT):
        out[f"{prefix}cap_count"] = Problem("invalid.count")
    if not (cap.per.isdigit() and int(cap.per) in periods):
        out[f"{prefix}cap_per"] = Problem("invalid.per")
    return out


def validate(state: FormState, *, today: date) -> dict[str, Problem]:
    """Problems by input name; empty when the form can be saved."""
    problems: dict[str, Problem] = {}
    problems.update(_cap_problems("", state.cap, state.periods))
    for key, cat in state.categories.items():
        problems.update(_cap_problems(f"cat.{key}.", cat.cap, state.periods))
    for name in ("quiet_start", "quiet_end"):
        if problem := _time_problem(getattr(state, name)):
            problems[name] = problem
    start, end = clean_time(state.quiet_start), clean_time(state.quiet_end)
    if state.quiet_enabled and start and start == end:
        problems["quiet_end"] = Problem("invalid.same_time")
    if state.quiet_timezone not in all_zones():
        problems["quiet_timezone"] = Problem("invalid.timezone")
    if state.quiet_enabled and not state.quiet_days:
        problems["quiet_days"] = Problem("invalid.days")
    if state.pause_until:
        try:
            day = date.fromisoformat(state.pause_until)
        except ValueError:
            problems["pause_until"] = Problem("invalid.date")
        else:
            if day <= today:
                problems["pause_until"] = Problem("invalid.date_past")
            elif day > today + timedelta(days=MAX_PAUSE_DAYS):
                problems["pause_until"] = Problem("invalid.date_far")
    if problem := _time_problem(state.digest_at):
        problems["digest_at"] = problem
    return problems


Change = tuple[Any, ...]


def _cap_doc(caps: Sequence[Cap]) -> list[dict[str, int]]:
    return [{"count": c.count, "per": c.per} for c in caps]


def _cap_change(cap: CapField) -> tuple[int | None, int]:
    return (int(cap.count) if cap.count else None), int(cap.per)


def difference(before: FormState, after: FormState) -> tuple[PreferencesIn, list[Change]]:
    """What to write (only what differs) and a list of changes to tell the recipient.

    `after` must have passed `validate`.
    """
    doc: dict[str, Any] = {}
    changes: list[Change] = []
    if switched := {ch: on for ch, on in after.channels.items() if before.channels[ch] != on}:
        doc["channels"] = switched
        changes += [("channel", ch, on) for ch, on in switched.items()]
    categories: dict[str, Any] = {}
    for key, new in after.categories.items():
        old, entry = before.categories[key], dict[str, Any]()
        if new.enabled != old.enabled:
            entry["enabled"] = new.enabled
            changes.append(("category", key, new.enabled))
        if chans := {ch: on for ch, on in new.channels.items() if old.channels[ch] != on}:
            entry["channels"] = chans
            changes += [("category_channel", key, ch, on) for ch, on in chans.items()]
        if new.cap.caps() != old.cap.caps():
            entry["caps"] = _cap_doc(new.cap.caps())
            changes.append(("category_cap", key, *_cap_change(new.cap)))
        if entry:
            categories[key] = entry
    if categories:
        doc["categories"] = categories
    if after.cap.caps() != before.cap.caps():
        doc["caps"] = _cap_doc(after.cap.caps())
        changes.append(("cap", *_cap_change(after.cap)))
    quiet: dict[str, Any] = {}
    start, end = clean_time(after.quiet_start), clean_time(after.quiet_end)
    for name, old_value, new_value in (
        ("enabled", before.quiet_enabled, after.quiet_enabled),
        ("start", before.quiet_start, start),
        ("end", before.quiet_end, end),
        ("timezone", before.quiet_timezone, after.quiet_timezone),
        ("days", before.quiet_days, after.quiet_days),
    ):
        if old_value != new_value:
            quiet[name] = new_value
    if quiet:
        doc["quiet_hours"] = quiet
        changes.append(("quiet",))
    if after.pause_until != before.pause_until:
        if after.pause_until:
            local = datetime.combine(
                date.fromisoformat(after.pause_until), time(), ZoneInfo(after.quiet_timezone)
            )
            doc["paused_until"] = local.isoformat()
            changes.append(("pause", after.pause_until))
        else:
            doc["paused_until"] = None
            changes.append(("unpause",))
    digest: dict[str, Any] = {}
    if after.digest_enabled != before.digest_enabled:
        digest["enabled"] = after.digest_enabled
    if (at := clean_time(after.digest_at)) != before.digest_at:
        digest["at"] = at
    if digest:
        doc["digest"] = digest
        changes.append(("digest",))
    return PreferencesIn.model_validate(doc), changes


def turn_off(category: str) -> PreferencesIn:
    """The change that switches one category off, as suggested after a 👎."""
    return PreferencesIn.model_validate({"categories": {category: {"enabled": False}}})


@lru_cache(maxsize=1)
def all_zones() -> frozenset[str]:
    """Every IANA time zone name, old aliases included."""
    return frozenset(available_timezones())


@lru_cache(maxsize=1)
def zones() -> frozenset[str]:
    """IANA time zones a person would pick from: regional names, and UTC."""
    return frozenset({"UTC"} | {z for z in all_zones() if z.split("/", 1)[0] in ZONE_REGIONS})


def zone_choices(selected: str) -> list[str]:
    """The zones for the picker, sorted, always including the one selected now."""
    return sorted(zones() | {selected})
