"""Alembic owns the schema: `migrate` builds every table on SQLite and PostgreSQL, twice safely."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Enum, inspect
from sqlmodel import SQLModel

import engine.store.models  # noqa: F401  (registers the tables)
from engine.settings import Settings
from engine.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[3]
TIDINGS = Path(sys.executable).with_name("tidings")
BOTH_BACKENDS = pytest.mark.parametrize(
    "database_url",
    [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


def _tables(settings: Settings) -> dict[str, set[str]]:
    engine = make_engine(settings)
    try:
        inspector = inspect(engine)
        return {
            name: {column["name"] for column in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }
    finally:
        engine.dispose()


@BOTH_BACKENDS
def test_migrate_creates_every_table_and_can_run_again(settings: Settings) -> None:
    assert _tables(settings) == {}
    migrate(settings)
    migrate(settings)  # a second run finds nothing to do
    tables = _tables(settings)
    assert "alembic_version" in tables
    for name, table in SQLModel.metadata.tables.items():
        assert name in tables, name
        assert tables[name] == {column.name for column in table.columns}, name


@BOTH_BACKENDS
def test_the_migrations_match_the_models(settings: Settings) -> None:
    """A model changed without a migration would break every fresh install."""
    migrate(settings)
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


@BOTH_BACKENDS
def test_the_migrate_command(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATABASE_URL"] = settings.database_url
    for _ in range(2):
        done = subprocess.run(
            [str(TIDINGS), "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "latest schema" in done.stdout
    assert set(SQLModel.metadata.tables) <= set(_tables(settings))


@BOTH_BACKENDS
def test_status_and_reason_columns_keep_the_type_the_migrations_made(settings: Settings) -> None:
    """The state columns are typed with enums in the models but stay the VARCHAR columns the
    migrations created: comparing their types finds no difference, so no data migration."""
    migrate(settings)
    states = {
        (table.name, column.name)
        for table in SQLModel.metadata.tables.values()
        for column in table.columns
        if isinstance(column.type, Enum)
    }
    assert ("deliveries", "status") in states and ("delivery_events", "reason") in states
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, SQLModel.metadata)
            columns = inspect(connection)
            lengths = {
                (table, column["name"]): getattr(column["type"], "length", None)
                for table in {t for t, _ in states}
                for column in columns.get_columns(table)
            }
    finally:
        engine.dispose()
    changed = [
        (diff[0][2], diff[0][3])
        for diff in differences
        if isinstance(diff, list) and diff[0][0] == "modify_type"
    ]
    assert not [column for column in changed if column in states]
    for table, name in states:
        declared = SQLModel.metadata.tables[table].c[name].type
        assert isinstance(declared, Enum)
        assert lengths[(table, name)] == declared.length, (table, name)
