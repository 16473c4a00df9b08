"""SQL engines and sessions, and running the Alembic migrations.

Workers, the scheduler and the CLI use these synchronous sessions directly; the
aiohttp handlers run them through `run_db`, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

from engine.settings import Settings
from engine.store import sqlite

T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (recipients' tags, stored preferences, …) are decoded for every row a chunk
# reads: orjson does it several times faster than the standard library.
JSON_CODEC = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


def make_engine(settings: Settings) -> Engine:
    """An engine for the configured database; SQLite gets WAL, a busy timeout and writers
    that take turns (`engine.store.sqlite`)."""
    url = settings.database_url
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "factory": sqlite.Connection},
            **JSON_CODEC,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={"connect_timeout": settings.sql_connect_timeout},
        **JSON_CODEC,
    )


class Database:
    """The engine and a session factory for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._executor: ThreadPoolExecutor | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking data-access function off the event loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tidings-db")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.engine.dispose()


def schema_revision(settings: Settings) -> str | None:
    """The Alembic revision the database is at; None for a database without a schema."""
    from alembic.migration import MigrationContext

    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def revisions_between(before: str | None, after: str | None) -> list[tuple[str, str]]:
    """(revision, first line of its message) for each step from `before` up to `after`."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    if after is None or before == after:
        return []
    steps = scripts.iterate_revisions(after, before or "base")
    return [(s.revision, (s.doc or "").splitlines()[0]) for s in reversed(list(steps))]


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic, and give a new installation its secret."""
    from alembic import command
    from alembic.config import Config

    from engine.store import installation

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", settings.database_url)
    command.upgrade(config, revision)
    if revision == "head":
        database = Database(settings)
        try:
            installation.ensure(database)
        finally:
            database.close()
