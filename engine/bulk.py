"""Bulk writes that work the same on SQLite and PostgreSQL.

They go through Core on the session's connection: the ORM's bulk paths fall back to a
statement per row when RETURNING meets ON CONFLICT, which is orders of magnitude slower.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, bindparam, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel

from engine.models import DeliveryEvent


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def insert_ignore(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> Sequence[Row[Any]]:
    """Insert rows, skipping those that clash on `conflict`; returns `returning` of the new ones."""
    if not rows:
        return []
    table = _table(model)
    connection = session.connection()
    flavour = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = flavour.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        return connection.execute(
            statement.returning(*(table.c[name] for name in returning)), list(rows)
        ).all()
    connection.execute(statement, list(rows))
    return []


def update_by_id(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Update many rows by primary key `id`: one executemany per set of changed columns."""
    table = _table(model)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        values = {f"v_{k}": v for k, v in row.items() if k != "id"}
        groups[tuple(sorted(values))].append({"k_id": row["id"], **values})
    connection = session.connection()
    for names, params in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("k_id"))
            .values({name[2:]: bindparam(name) for name in names})
        )
        connection.execute(statement, params)


def add_events(session: Session, events: Sequence[dict[str, Any]]) -> None:
    """Append delivery events in one executemany."""
    if events:
        rows = [{"reason": None, "detail": None, **event} for event in events]
        session.connection().execute(insert(_table(DeliveryEvent)), rows)
