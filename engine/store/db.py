"""SQL engines and sessions, and running the Alembic migrations.

Workers, the scheduler and the CLI use these synchronous sessions directly; the
aiohttp handlers hand a data-access function to `Database.read` or `Database.write`,
which run it in a session of its own off the event loop.

On SQLite, writers take turns (`engine.store.sqlite`): foreground writers first, and a
background writer only while none of them waits. Whether a write is background work is
decided here, by the session it runs in (`background=True`) or the block around it
(`background()`), so that nothing outside the store deals with SQLite's turns.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

from engine.settings import Settings
from engine.store import sqlite

T = TypeVar("T")
P = ParamSpec("P")
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


def background() -> AbstractContextManager[None]:
    """A block whose SQL writes, in this thread, are background work: on SQLite they take
    a turn only while no foreground writer (the API, the scheduler, critical jobs) waits.
    PostgreSQL has no turns to take; there the block changes nothing."""
    return sqlite.background()


class Database:
    """The engine and a session factory for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._executor: ThreadPoolExecutor | None = None

    @contextmanager
    def session(self, *, background: bool = False) -> Iterator[Session]:
        """A session that commits on success and rolls back on error.

        With `background=True` its writes give way to foreground writes (see
        `background()`): for bookkeeping nobody waits for.
        """
        with _background(background), Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)`, a blocking function, run off the event loop."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tidings-db")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def read(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(session, *args, **kwargs)` in a session of its own, off the event loop.

        Nothing is committed: a read that adds or changes rows by mistake leaves them
        unwritten. Rows it returns stay readable after the session closes.
        """

        def call() -> T:
            with Session(self.engine, expire_on_commit=False) as session:
                return fn(session, *args, **kwargs)

        return await self.run(call)

    async def write(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(session, *args, **kwargs)` in a transaction of its own, off the event loop:
        committed when `fn` returns, rolled back when it raises (its exception propagates)."""

        def call() -> T:
            with self.session() as session:
                return fn(session, *args, **kwargs)

        return await self.run(call)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self.engine.dispose()


def _background(on: bool) -> AbstractContextManager[None]:
    return sqlite.background() if on else nullcontext()


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
