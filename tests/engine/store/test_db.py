"""The store's transaction helpers: `write` keeps what its function wrote only when it
returns, `read` keeps nothing, and on SQLite a background session's writes wait for a
foreground writer that is waiting too."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from engine.store.db import Database
from engine.store.sqlite import Connection
from tests.engine.conftest import wait_for


@pytest.fixture
def table(db: Database) -> Database:
    with db.session() as session:
        session.execute(text("CREATE TABLE turns (k INTEGER PRIMARY KEY, who TEXT)"))
    return db


def add(session: Session, who: str) -> None:
    session.execute(text("INSERT INTO turns (who) VALUES (:who)"), {"who": who})


def written(db: Database) -> list[str]:
    with db.session() as session:
        return [who for (who,) in session.execute(text("SELECT who FROM turns ORDER BY k"))]


def test_a_write_keeps_what_its_function_wrote_only_when_it_returns(table: Database) -> None:
    def add_then_fail(session: Session, who: str) -> None:
        add(session, who)
        raise ValueError("refused after writing")

    asyncio.run(table.write(add, "kept"))
    with pytest.raises(ValueError, match="refused after writing"):
        asyncio.run(table.write(add_then_fail, "rolled back"))
    assert written(table) == ["kept"]


def test_a_read_keeps_nothing_its_function_wrote(table: Database) -> None:
    def count(session: Session) -> int:
        add(session, "by mistake")
        return len(session.execute(text("SELECT k FROM turns")).all())

    assert asyncio.run(table.read(count)) == 1  # the function saw its own row…
    assert written(table) == []  # …which was never committed


def taken(path: str, lock: str) -> bool:
    """Whether a writer holds one of the lock files beside the SQLite database."""
    fd = os.open(f"{path}-{lock}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.fixture
def holder(table: Database) -> Iterator[sqlite3.Connection]:
    """A foreground writer in the middle of its transaction, holding the write turn."""
    path = table.settings.database_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False, factory=Connection)
    connection.execute("INSERT INTO turns (who) VALUES ('holder')")
    yield connection
    connection.close()


def test_a_background_session_writes_after_a_foreground_writer_that_waited_less(
    table: Database, holder: sqlite3.Connection
) -> None:
    path = str(Path(table.settings.database_url.removeprefix("sqlite:///")))

    def write(who: str, background: bool) -> None:
        with table.session(background=background) as session:
            add(session, who)

    bookkeeping = threading.Thread(target=write, args=("bookkeeping", True), daemon=True)
    answer = threading.Thread(target=write, args=("answer", False), daemon=True)
    try:
        bookkeeping.start()
        wait_for(lambda: taken(path, "background"), timeout=10, every=0.01)
        answer.start()
        wait_for(lambda: taken(path, "waiting"), timeout=10, every=0.01)
        holder.commit()
    finally:
        holder.rollback()  # a failed wait lets the writers finish (a no-op after the commit)
        for thread in (bookkeeping, answer):
            thread.join(10)
    assert written(table) == ["holder", "answer", "bookkeeping"]
