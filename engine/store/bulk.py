"""Bulk reads and writes that work the same on SQLite and PostgreSQL.

Reads that only look return plain rows instead of ORM objects: a row answers the same
attribute names, at a fraction of the cost of building and instrumenting an object.

They send the driver multi-row statements (`INSERT … VALUES (…), (…), …` on SQLite,
`INSERT … SELECT * FROM unnest(<one array per column>)` on PostgreSQL), with each value
converted by the column type's own bind processor. SQLAlchemy's
statement-per-row paths cost ~30 µs a row in Python, and a broadcast writes millions
of rows while holding SQLite's single write lock; this costs a few.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NotRequired, TypedDict, TypeVar, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Row,
    Table,
    any_,
    bindparam,
    insert,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, SQLModel

from engine.store import outbox
from engine.store.models import Delivery, DeliveryEvent, EventOutbox
from engine.store.states import EventStatus, Reason

# Bound parameters per statement: SQLite allows 32,766 (since 3.32), PostgreSQL 65,535.
MAX_PARAMS = 30_000
MAX_ROWS = 1_000

Convert = Callable[[Any], Any] | None
M = TypeVar("M", bound=SQLModel)


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def read(
    session: Session,
    model: type[M],
    *where: ColumnElement[bool],
    only: Sequence[str] | None = None,
) -> list[M]:
    """The rows of `model` matching `where`, as read-only rows shaped like the model.

    For bulk reads that change nothing: the rows are not in the session, and assigning to
    them fails. With `only`, just those columns are read (and there to read): a planner
    reading a million recipients skips decoding what it never looks at.
    """
    table = _table(model)
    columns = table.columns if only is None else [table.c[name] for name in only]
    rows = session.execute(select(*columns).where(*where)).all()
    return cast(list[M], rows)


@functools.cache
def converters(table: Table, names: tuple[str, ...], dialect: Dialect) -> tuple[Convert, ...]:
    """Each column's bind processor for `dialect` (None where values pass as they are)."""
    return tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)


def _tuples(
    table: Table, names: tuple[str, ...], rows: Sequence[dict[str, Any]], dialect: Dialect
) -> Sequence[Sequence[Any]]:
    """Rows as value sequences in `names` order, converted for the driver.

    A chunk's rows share most of their values (one timestamp, one status), so each
    distinct value is converted once.
    """
    get = itemgetter(*names)
    if len(names) == 1:
        return [(get(row),) for row in rows]
    processors = converters(table, names, dialect)
    if not any(processors):
        return [get(row) for row in rows]
    values = [list(get(row)) for row in rows]
    for i, convert in enumerate(processors):
        if convert is None:
            continue
        done: dict[Any, Any] = {}
        texts: dict[tuple[str, ...], Any] = {}
        for row in values:
            if (value := row[i]) is None:
                continue
            try:
                row[i] = done[value]
            except KeyError:
                row[i] = done[value] = convert(value)
            except TypeError:  # unhashable (a JSON document)
                row[i] = _document(value, convert, texts)
    return [tuple(row) for row in values]


def _document(value: Any, convert: Callable[[Any], Any], texts: dict[tuple[str, ...], Any]) -> Any:
    """A JSON column's value converted; a list of strings (tags) once per distinct list."""
    if not (isinstance(value, list) and all(type(item) is str for item in value)):
        return convert(value)
    key = tuple(value)
    if key not in texts:
        texts[key] = convert(value)
    return texts[key]


@functools.cache
def _sql_type(table: Table, name: str, dialect: Dialect) -> str:
    return str(table.c[name].type.compile(dialect=dialect))


def _marker(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _insert(
    connection: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    tail: str,
) -> list[Row[Any]]:
    """Insert `rows` (all with the same keys) in multi-row statements ending in `tail`."""
    names = tuple(rows[0])
    values = _tuples(table, names, rows, connection.dialect)
    return _insert_values(connection, table, names, values, tail)


def _insert_values(
    connection: Connection,
    table: Table,
    names: tuple[str, ...],
    values: Sequence[Sequence[Any]],
    tail: str,
) -> list[Row[Any]]:
    """Insert rows given as value sequences in `names` order, converted for the driver, in
    multi-row statements ending in `tail`."""
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    into = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
    if dialect.name == "postgresql":
        # One array per column: the statement stays short, so psycopg converts its
        # placeholders once and PostgreSQL prepares it once (a multi-row VALUES of 16,000
        # placeholders costs psycopg ~45 ms to parse, every time).
        arrays = ", ".join(f"%s::{_sql_type(table, name, dialect)}[]" for name in names)
        sql = f"{into}SELECT * FROM unnest({arrays}){tail}"
        result = connection.exec_driver_sql(sql, tuple(map(list, zip(*values, strict=True))))
        return list(result.all()) if result.returns_rows else []
    group = "(" + ", ".join([_marker(dialect)] * len(names)) + ")"
    head = f"{into}VALUES "
    largest = min(MAX_ROWS, MAX_PARAMS // len(names))
    out: list[Row[Any]] = []
    start = 0
    for size in _batches(len(values), largest):
        batch = values[start : start + size]
        start += size
        sql = head + ", ".join([group] * size) + tail
        result = connection.exec_driver_sql(sql, tuple(chain.from_iterable(batch)))
        if result.returns_rows:
            out += result.all()
    return out


def _batches(count: int, largest: int) -> list[int]:
    """Batch sizes for `count` rows: powers of two, none above `largest`.

    Drivers keep each distinct statement prepared (a multi-row INSERT is a large one);
    sizes from a short fixed list keep that cache from filling with one-off statements.
    """
    top = 1 << max(0, largest.bit_length() - 1)
    sizes = [top] * (count // top)
    rest = count % top
    while rest:
        size = 1 << (rest.bit_length() - 1)
        sizes.append(size)
        rest -= size
    return sizes


def insert_ignore(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    conflict: Sequence[str],
    returning: Sequence[str] = (),
) -> Sequence[Row[Any]]:
    """Insert rows (all with the same keys), skipping those that clash on `conflict`;
    returns `returning` of the new ones."""
    if not rows:
        return []
    connection = session.connection()
    quote = connection.dialect.identifier_preparer.quote
    tail = f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING"
    if returning:
        tail += f" RETURNING {', '.join(quote(c) for c in returning)}"
    return _insert(connection, _table(model), rows, tail)


def upsert(
    session: Session,
    model: type[SQLModel],
    rows: Sequence[dict[str, Any]],
    *,
    update: Sequence[str],
    conflict: Sequence[str] = ("id",),
    where: str | None = None,
    returning: Sequence[str] = (),
) -> Sequence[Row[Any]]:
    """Insert rows (all with the same keys, no two clashing on `conflict`); a row that
    clashes with one already stored updates that one's `update` columns instead, only
    where the SQL condition `where` holds (it may name the table and `excluded`).
    Returns `returning` of the rows inserted or updated."""
    if not rows:
        return []
    connection = session.connection()
    tail = upsert_clause(connection.dialect, update=update, conflict=conflict, where=where)
    if returning:
        quote = connection.dialect.identifier_preparer.quote
        tail += f" RETURNING {', '.join(quote(c) for c in returning)}"
    return _insert(connection, _table(model), rows, tail)


def upsert_values(
    session: Session,
    model: type[SQLModel],
    names: tuple[str, ...],
    values: Sequence[Sequence[Any]],
    *,
    update: Sequence[str],
    conflict: Sequence[str] = ("id",),
) -> None:
    """`upsert` of rows given as value sequences in `names` order, already converted for
    the driver (`converters`)."""
    if values:
        connection = session.connection()
        tail = upsert_clause(connection.dialect, update=update, conflict=conflict)
        _insert_values(connection, _table(model), names, values, tail)


def upsert_clause(
    dialect: Dialect,
    *,
    update: Sequence[str],
    conflict: Sequence[str] = ("id",),
    where: str | None = None,
) -> str:
    """` ON CONFLICT (…) DO UPDATE SET …`: a row clashing on `conflict` with one stored
    sets that one's `update` columns from itself (`excluded`), where `where` holds."""
    quote = dialect.identifier_preparer.quote
    sets = ", ".join(f"{quote(name)} = excluded.{quote(name)}" for name in update)
    tail = f" ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO UPDATE SET {sets}"
    if where is not None:
        tail += f" WHERE {where}"
    return tail


def update_by_id(session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Update many rows by primary key `id`: one executemany per set of changed columns."""
    if not rows:
        return
    table = _table(model)
    connection = session.connection()
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    mark = _marker(dialect)
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(k for k in row if k != "id"))].append(row)
    for names, members in groups.items():
        assignments = ", ".join(f"{quote(n)} = {mark}" for n in names)
        sql = f"UPDATE {quote(table.name)} SET {assignments} WHERE {quote('id')} = {mark}"
        values = _tuples(table, (*names, "id"), members, dialect)
        connection.exec_driver_sql(sql, values)


class EventRow(TypedDict):
    """One step in a delivery's history (a `DeliveryEvent` row): the status it reached,
    when (aware UTC), and for a suppression or hold its reason; `detail` adds words."""

    delivery_id: int
    status: EventStatus
    at: datetime
    reason: NotRequired[Reason | None]
    detail: NotRequired[str | None]


def add_events(session: Session, events: Sequence[EventRow]) -> None:
    """Append delivery events in multi-row inserts, with the outbox rows telling the
    registered event endpoints of them (`engine.store.outbox`), in the same transaction."""
    if events:
        # `reason` and `detail` only when some event has one (NULL all the same): a
        # broadcast's events have neither, and binding a NULL costs what a value does.
        given = [k for k in ("reason", "detail") if any(e.get(k) is not None for e in events)]
        rows: list[dict[str, Any]] = [
            {"delivery_id": e["delivery_id"], "status": e["status"], "at": e["at"]} for e in events
        ]
        for name in given:
            for row, e in zip(rows, events, strict=True):
                row[name] = e.get(name)
        _insert(session.connection(), _table(DeliveryEvent), rows, "")
        outbox.delivery_events(session, rows, _write_outbox)


def add_first_events(
    session: Session, written: Sequence[tuple[int, str, str | None]], at: datetime
) -> None:
    """Start the history of deliveries this transaction just wrote, given as (id, status,
    reason): an event of each one's status and reason, at `at`.

    Unless an event endpoint wants delivery events (then it is `add_events`), the
    database copies them from the rows themselves in one statement: on SQLite every
    delivery between the first and the last id written is one of them (its one writer
    holds the write turn until this transaction ends), on PostgreSQL they are named as
    one array.
    """
    if not written:
        return
    if outbox.wanted_statuses(session) & {status for _, status, _ in written}:
        add_events(
            session,
            [
                {
                    "delivery_id": i,
                    "status": EventStatus(status),
                    "reason": Reason(reason) if reason else None,
                    "at": at,
                }
                for i, status, reason in written
            ],
        )
        return
    ids = [i for i, _, _ in written]
    delivery = _table(Delivery).c
    if session.connection().dialect.name == "postgresql":
        which = delivery.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
    else:
        which = delivery.id.between(min(ids), max(ids))
    copied = select(
        delivery.id, delivery.status, delivery.reason, literal(at, DateTime(timezone=True))
    ).where(which)
    columns = ["delivery_id", "status", "reason", "at"]
    session.execute(insert(_table(DeliveryEvent)).from_select(columns, copied))


def _write_outbox(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    _insert(session.connection(), _table(EventOutbox), rows, "")
