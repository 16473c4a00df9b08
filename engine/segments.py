"""Derived segments: spend tier and activity, from a recipient's attributes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_
from sqlmodel import col

from engine.models import Recipient
from engine.settings import Settings
from engine.timeutil import aware

TIERS = ("whale", "dolphin", "minnow")
ACTIVITIES = ("active", "sleeping", "churned")


def tier(annual_spend: float, settings: Settings) -> str:
    """`whale` above the whale threshold, `minnow` below the dolphin one, else `dolphin`."""
    if annual_spend > settings.whale_spend:
        return "whale"
    if annual_spend >= settings.dolphin_spend:
        return "dolphin"
    return "minnow"


def activity(last_active_at: datetime | None, at: datetime, settings: Settings) -> str:
    """`active` within the active window, `sleeping` up to the sleeping one, else `churned`."""
    seen = aware(last_active_at)
    if seen is None:
        return "churned"
    days = (at - seen) / timedelta(days=1)
    if days <= settings.active_days:
        return "active"
    if days <= settings.sleeping_days:
        return "sleeping"
    return "churned"


def segment_clause(
    segment: dict[str, Any], at: datetime, settings: Settings
) -> ColumnElement[bool] | None:
    """A SQL condition for the tier and activity parts of a segment filter (tags are in Python)."""
    parts: list[ColumnElement[bool]] = []
    spend = col(Recipient.annual_spend)
    seen = col(Recipient.last_active_at)
    if tiers := segment.get("tier"):
        by_tier = {
            "whale": spend > settings.whale_spend,
            "dolphin": and_(spend >= settings.dolphin_spend, spend <= settings.whale_spend),
            "minnow": spend < settings.dolphin_spend,
        }
        parts.append(or_(false(), *(by_tier[t] for t in tiers)))
    if activities := segment.get("activity"):
        active_since = at - timedelta(days=settings.active_days)
        sleeping_since = at - timedelta(days=settings.sleeping_days)
        by_activity = {
            "active": seen >= active_since,
            "sleeping": and_(seen < active_since, seen >= sleeping_since),
            "churned": or_(seen.is_(None), seen < sleeping_since),
        }
        parts.append(or_(false(), *(by_activity[a] for a in activities)))
    return and_(*parts) if parts else None


def matches_tags(tags: list[str] | None, segment: dict[str, Any]) -> bool:
    """Whether a recipient's tags pass the segment's `tags_any` / `tags_all` filters."""
    have = set(tags or ())
    if (wanted := segment.get("tags_any")) and not have.intersection(wanted):
        return False
    return not ((needed := segment.get("tags_all")) and not have.issuperset(needed))
