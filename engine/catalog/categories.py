"""Categories: define (upsert) and list."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from engine.locales import choose as choose_locale
from engine.schemas.catalog import CategoryIn
from engine.store.models import OPTIONAL_KINDS, Category
from engine.timeutil import format_duration, iso, now


def upsert(session: Session, key: str, spec: CategoryIn) -> Category:
    """Create or replace a category definition."""
    names = spec.name if isinstance(spec.name, dict) else None
    name = spec.name if isinstance(spec.name, str) else _in(spec.name, spec.default_locale)
    row = session.get(Category, key) or Category(
        key=key,
        name=name,
        kind=spec.kind,
        priority=spec.priority,
        channels=[str(c) for c in spec.channels],
    )
    row.name = name
    row.names = dict(names) if names else None
    row.description = spec.description
    row.kind = spec.kind
    row.priority = spec.priority
    row.channels = [str(c) for c in spec.channels]
    row.required = spec.required
    row.caps = [{"count": c.count, "per": c.per} for c in spec.caps]
    row.caps_by_activity = (
        {
            activity: [{"count": c.count, "per": c.per} for c in caps]
            for activity, caps in spec.caps_by_activity.items()
        }
        if spec.caps_by_activity
        else None
    )
    row.over_cap = spec.over_cap or "drop"
    row.collapse_window = spec.collapse_window
    row.escalate_after = spec.escalate_after
    row.global_cap = spec.global_cap
    row.default_locale = spec.default_locale
    row.templates = {ch: dict(locales) for ch, locales in spec.templates.items()}
    row.digest_templates = {ch: dict(locales) for ch, locales in spec.digest_templates.items()}
    row.updated_at = now()
    session.add(row)
    return row


def _in(texts: Any, locale: str | None, default: str = "en") -> str:
    """The text of `texts` (one string, or one per locale) for a reader of `locale`."""
    if isinstance(texts, str):
        return texts
    best = choose_locale(locale, texts, default)
    return str(texts[best]) if best is not None else ""


def name_in(category: Category, locale: str | None) -> str:
    """The category's name for a reader of `locale` (BCP 47 matching, `engine.locales`)."""
    return _in(category.names, locale, category.default_locale) if category.names else category.name


def description_in(category: Category, locale: str | None) -> str | None:
    """The category's description for a reader of `locale`, if it has one."""
    if category.description is None:
        return None
    return _in(category.description, locale, category.default_locale)


def _duration(seconds: int | None) -> str | None:
    return format_duration(seconds) if seconds is not None else None


def _caps(caps: list[dict[str, int]]) -> list[dict[str, Any]]:
    return [{"count": c["count"], "per": format_duration(c["per"])} for c in caps]


def public(category: Category) -> dict[str, Any]:
    """The category as the API shows it."""
    return {
        "key": category.key,
        "name": category.names or category.name,
        "description": category.description,
        "kind": category.kind,
        "priority": category.priority,
        "channels": category.channels,
        "required": category.required,
        "caps": _caps(category.caps),
        "caps_by_activity": {
            activity: _caps(caps) for activity, caps in (category.caps_by_activity or {}).items()
        },
        "over_cap": category.over_cap,
        "collapse_window": _duration(category.collapse_window),
        "escalate_after": _duration(category.escalate_after),
        "global_cap": (
            category.global_cap
            if category.global_cap is not None
            else category.kind in OPTIONAL_KINDS
        ),
        "default_locale": category.default_locale,
        "templates": category.templates,
        "digest_templates": category.digest_templates or {},
        "created_at": iso(category.created_at),
        "updated_at": iso(category.updated_at),
    }
