"""Engagement rates per category, channel or variant over a time range: what was sent,
opened, clicked and converted, what was suppressed or failed, and how recipients rated it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from engine.pipeline.receipts import REACHED
from engine.store.models import Delivery, Feedback

OPENED = ("opened", "read", "clicked", "converted")
CLICKED = ("clicked", "converted")
GROUPS = {"category": Delivery.category, "channel": Delivery.channel, "variant": Delivery.variant}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates(session: Session, *, by: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """One row per group with counts and rates, largest first."""
    key = col(GROUPS[by])
    window = (col(Delivery.created_at) >= since, col(Delivery.created_at) < until)
    opened = (col(Delivery.read_at).is_not(None)) | col(Delivery.status).in_(OPENED)
    counts: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    query = (
        select(key, Delivery.status, func.count(), func.sum(case((opened, 1), else_=0)))
        .where(*window)
        .group_by(key, col(Delivery.status))
    )
    for group, status, total, seen in session.exec(query):
        row = counts[group]
        row["deliveries"] += total
        row[status] += total
        row["reached"] += total if status in REACHED else 0
        row["opened"] += int(seen or 0)
        row["clicked"] += total if status in CLICKED else 0
    ratings = (
        select(key, Feedback.rating, func.count())
        .join(Feedback, col(Feedback.delivery_id) == col(Delivery.id))
        .where(*window, col(Delivery.status).in_(REACHED))
        .group_by(key, col(Feedback.rating))
    )
    for group, rating, total in session.exec(ratings):
        counts[group][f"feedback_{rating}"] += total
    out = []
    for group, row in counts.items():
        reached = row["reached"]
        out.append(
            {
                by: group,
                "deliveries": row["deliveries"],
                "sent": reached,
                "opened": row["opened"],
                "clicked": row["clicked"],
                "converted": row["converted"],
                "suppressed": row["suppressed"],
                "failed": row["failed"],
                "scheduled": row["scheduled"],
                "feedback": {r: row[f"feedback_{r}"] for r in ("up", "meh", "down")},
                "open_rate": _rate(row["opened"], reached),
                "click_rate": _rate(row["clicked"], reached),
                "conversion_rate": _rate(row["converted"], reached),
                "complaint_rate": _rate(row["feedback_down"], reached),
            }
        )
    return sorted(out, key=lambda r: -r["deliveries"])
