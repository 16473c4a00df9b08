"""Loading many rows into one table in one transaction: what an import writes.

A file of a million recipients is a million upserts; sent a statement a row, the
driver's and SQL's costs per statement would dominate. `Load` takes the rows a batch at
a time, column by column, and upserts each batch inside the caller's transaction, which
the caller commits, or rolls back leaving nothing:

- on SQLite, in multi-row `INSERT … ON CONFLICT DO UPDATE` statements
  (`engine.store.bulk`);
- on PostgreSQL, streamed with `COPY` into a temporary table (psycopg formats the rows
  in C, the server parses them), then moved by one `INSERT … SELECT … ON CONFLICT DO
  UPDATE`: a quarter of the client's CPU that the multi-row statements take.

Rows of one batch clash on no key (PostgreSQL updates a row at most once a statement); a
key repeated in a later batch updates the row the earlier batch wrote.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Dialect, Table
from sqlmodel import Session, SQLModel

from engine.store import bulk
from engine.store.db import JSON_CODEC

# SQLite's page cache while a load runs, in KiB (2 MiB otherwise): loading 1,000,000
# recipients into a table of as many took 22 CPU-seconds with the default, a third of
# them in the kernel re-reading index pages, and 16 with this.
SQLITE_CACHE_KIB = 65_536


class Load:
    """Batches of rows upserted into `model`'s table in `session`'s transaction, a row
    found by its `conflict` key updating that row.

    Used as a context manager around the batches: on SQLite its connection keeps a page
    cache of `SQLITE_CACHE_KIB` meanwhile.
    """

    def __init__(
        self, session: Session, model: type[SQLModel], *, conflict: tuple[str, ...] = ("id",)
    ) -> None:
        self.session = session
        self.model = model
        self.conflict = conflict
        table = model.__table__  # type: ignore[attr-defined]
        assert isinstance(table, Table)
        self.table = table
        self._staged = False
        self._sqlite: tuple[sqlite3.Connection, int] | None = None

    def __enter__(self) -> Load:
        driver = self.session.connection().connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            self._sqlite = driver, driver.execute("PRAGMA cache_size").fetchone()[0]
            driver.execute(f"PRAGMA cache_size = {-SQLITE_CACHE_KIB}")
        return self

    def __exit__(self, *_: object) -> None:
        if self._sqlite is not None:
            driver, cache = self._sqlite
            driver.execute(f"PRAGMA cache_size = {cache}")

    def upsert(self, columns: Mapping[str, Sequence[Any]], *, update: Sequence[str]) -> None:
        """Insert rows given column by column (`{name: values}`, values in Python terms,
        None for NULL, every column as long, no two rows with the same key); a row whose
        key is already stored updates that row's `update` columns instead and leaves its
        others as they are."""
        names = tuple(columns)
        if not names or not columns[names[0]]:
            return
        connection = self.session.connection()
        dialect = connection.dialect
        converters = _converters(self.table, names, dialect)
        converted = [
            _converted(values, convert)
            for values, convert in zip(columns.values(), converters, strict=True)
        ]
        rows = list(zip(*converted, strict=True))
        if dialect.name != "postgresql":
            bulk.upsert_values(
                self.session, self.model, names, rows, update=update, conflict=self.conflict
            )
            return
        quote = dialect.identifier_preparer.quote
        table = quote(self.table.name)
        stage = quote(f"load_{self.table.name}")
        listed = ", ".join(quote(name) for name in names)
        if not self._staged:
            connection.exec_driver_sql(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DROP"
            )
            connection.exec_driver_sql(f"TRUNCATE {stage}")
            self._staged = True
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor() as cursor, cursor.copy(f"COPY {stage} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        tail = bulk.upsert_clause(dialect, update=update, conflict=self.conflict)
        connection.exec_driver_sql(
            f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {stage}{tail}"
        )
        connection.exec_driver_sql(f"TRUNCATE {stage}")


def _converters(
    table: Table, names: tuple[str, ...], dialect: Dialect
) -> list[Callable[[Any], Any] | None]:
    """How each column's values reach the driver: a JSON column's as text (what its bind
    processor would send, and what `COPY` takes), others by their bind processor."""
    processors = bulk.converters(table, names, dialect)
    text = JSON_CODEC["json_serializer"]
    return [
        text if isinstance(table.c[name].type, JSON) else processor
        for name, processor in zip(names, processors, strict=True)
    ]


def _converted(values: Sequence[Any], convert: Callable[[Any], Any] | None) -> Sequence[Any]:
    """One column's values converted for the driver, None kept; each distinct value of a
    column of plain values (a timestamp shared by the batch) converted once."""
    if convert is None:
        return values
    try:
        distinct = set(values)
    except TypeError:  # JSON documents
        return [None if value is None else convert(value) for value in values]
    done = {value: None if value is None else convert(value) for value in distinct}
    return [done[value] for value in values]
