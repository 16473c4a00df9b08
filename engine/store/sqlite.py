"""SQLite connections whose writers queue on a file lock, critical work first.

SQLite lets one writer in at a time; the others wait in its busy handler, which
sleeps and polls (naps of up to 100 ms). With a dozen writers busy on a broadcast the
lock sits free between naps, and an order notification's write can lose the race for
seconds. Here a connection that is about to write first takes an exclusive `flock` on
a file beside the database and keeps it until its transaction ends: the kernel hands
the lock over the moment it is released, so writers queue instead of polling.

Foreground writers (the API, the scheduler, critical jobs) go first: a background writer
(bulk and normal jobs, inside `background()`) takes a turn only while none of them waits.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _Thread(threading.local):
    background = False  # inside `background()`
    writing = False  # holds a writing turn, through any connection


_local = _Thread()


@contextmanager
def background() -> Iterator[None]:
    """Writes in this block give way to foreground writes."""
    before = _local.background
    _local.background = True
    try:
        yield
    finally:
        _local.background = before


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)


class _Turn:
    """The file locks one connection holds while it writes.

    `writer.lock` is the turn itself. A foreground writer holds `waiting.lock` shared
    while it waits for its turn; a background writer that gets the turn while anyone
    holds it hands the turn straight back and waits for them, so foreground work waits
    for at most the one transaction already under way. `background.lock` lets one
    background writer at a time compete at all.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self.held: list[int] = []

    def _lock(self, name: str, how: int) -> int:
        fd = os.open(f"{self.database}-{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, how)  # releases the GIL while it waits
        except BaseException:
            os.close(fd)
            raise
        return fd

    def take(self) -> None:
        if self.held or _local.writing:
            return  # this thread already has the turn (through another connection)
        if _local.background:
            self.held.append(self._lock("background", fcntl.LOCK_EX))
            while True:
                writer = self._lock("writer", fcntl.LOCK_EX)
                try:
                    os.close(self._lock("waiting", fcntl.LOCK_EX | fcntl.LOCK_NB))
                    break  # nobody in the foreground is waiting
                except BlockingIOError:
                    os.close(writer)
                    os.close(self._lock("waiting", fcntl.LOCK_EX))
            self.held.append(writer)
        else:
            waiting = self._lock("waiting", fcntl.LOCK_SH)
            try:
                self.held.append(self._lock("writer", fcntl.LOCK_EX))
            finally:
                os.close(waiting)
        _local.writing = True

    def give_back(self) -> None:
        if not self.held:
            return
        for fd in reversed(self.held):
            os.close(fd)  # closing the descriptor releases its lock
        self.held = []
        _local.writing = False


class Cursor(sqlite3.Cursor):
    """Takes the connection's writing turn before the first write of a transaction."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        connection = self.connection
        assert isinstance(connection, Connection)
        connection.before(sql)
        try:
            super().execute(sql, parameters)
        finally:
            connection.after()
        return self

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor:
        connection = self.connection
        assert isinstance(connection, Connection)
        connection.before(sql)
        try:
            super().executemany(sql, parameters)
        finally:
            connection.after()
        return self


class Connection(sqlite3.Connection):
    """A `sqlite3` connection (pass as `factory=`) whose writes take turns across processes."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        memory = database in ("", ":memory:") or database.startswith("file:")
        self._turn = None if memory else _Turn(os.path.abspath(database))

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or Cursor)

    # The shortcuts would run the statement in C, past `Cursor`: route them through it.
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def before(self, sql: str) -> None:
        if self._turn is not None and not self._turn.held and _is_write(sql):
            self._turn.take()

    def after(self) -> None:
        # A write outside a transaction (autocommit, or one that failed) ends here.
        if self._turn is not None and not self.in_transaction:
            self._turn.give_back()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if self._turn is not None:
                self._turn.give_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if self._turn is not None:
                self._turn.give_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._turn is not None:
                self._turn.give_back()
