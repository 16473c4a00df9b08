"""Bulk writes that work the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from engine.models import DeliveryEvent


def insert_ignore(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[Any] = (),
) -> Sequence[Row[Any]]:
    """Insert rows, skipping those that clash on `conflict`; returns `returning` of the new ones."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    flavour = postgresql if dialect == "postgresql" else sqlite
    statement = flavour.insert(model).on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        return session.execute(statement.returning(*returning), list(rows)).all()
    session.execute(statement, list(rows))
    return []


def update_by_id(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Update many rows by primary key, one executemany."""
    if rows:
        session.execute(update(model), list(rows))


def add_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Append delivery events in one executemany."""
    if events:
        session.execute(insert(DeliveryEvent), list(events))
