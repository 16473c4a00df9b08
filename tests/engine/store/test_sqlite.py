"""SQLite writers take turns on a file lock: nobody fails with "database is locked",
a failed write gives its turn back, and background writers wait for foreground ones."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from engine.store.sqlite import Connection, background


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(
        str(path), timeout=0.05, check_same_thread=False, factory=Connection
    )
    connection.execute("PRAGMA journal_mode=WAL")
    return connection


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "turns.db"
    with connect(path) as connection:
        connection.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, who TEXT)")
    return path


def test_writers_in_many_threads_all_land_without_lock_errors(path: Path) -> None:
    # SQLite's own busy handler would give up after 50 ms; taking turns never needs it.
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        connection = connect(path)
        try:
            for i in range(40):
                connection.execute("INSERT INTO t (k, who) VALUES (?, ?)", (n * 1000 + i, "w"))
                time.sleep(0.001)  # hold the transaction open a little
                connection.commit()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (320,)


def test_a_failed_write_gives_its_turn_back(path: Path) -> None:
    first = connect(path)
    first.execute("INSERT INTO t (k, who) VALUES (1, 'first')")
    first.commit()
    with pytest.raises(sqlite3.IntegrityError):
        first.execute("INSERT INTO t (k, who) VALUES (1, 'again')")
    first.rollback()

    done = threading.Event()

    def other() -> None:
        with connect(path) as connection:
            connection.execute("INSERT INTO t (k, who) VALUES (2, 'other')")
        done.set()

    threading.Thread(target=other, daemon=True).start()
    assert done.wait(5), "the other writer never got its turn"
    first.close()


def test_a_background_writer_waits_for_the_foreground_transaction(path: Path) -> None:
    foreground = connect(path)
    foreground.execute("INSERT INTO t (k, who) VALUES (1, 'order')")  # holds the turn
    finished = threading.Event()

    def bulk() -> None:
        with background(), connect(path) as connection:
            connection.execute("INSERT INTO t (k, who) VALUES (2, 'broadcast')")
        finished.set()

    threading.Thread(target=bulk, daemon=True).start()
    assert not finished.wait(0.3), "the background write went in while the turn was taken"
    foreground.commit()
    assert finished.wait(5)
    rows = foreground.execute("SELECT who FROM t ORDER BY k").fetchall()
    assert rows == [("order",), ("broadcast",)]
    foreground.close()


def test_a_waiting_foreground_writer_goes_before_a_waiting_background_writer(path: Path) -> None:
    holder = connect(path)
    holder.execute("INSERT INTO t (who) VALUES ('holder')")  # holds the turn

    def write(who: str, in_background: bool) -> None:
        connection = connect(path)
        if in_background:
            with background():
                connection.execute("INSERT INTO t (who) VALUES (?)", (who,))
                connection.commit()
        else:
            connection.execute("INSERT INTO t (who) VALUES (?)", (who,))
            connection.commit()
        connection.close()

    bulk = threading.Thread(target=write, args=("broadcast", True))
    bulk.start()
    time.sleep(0.2)  # the broadcast is queued first…
    order = threading.Thread(target=write, args=("order", False))
    order.start()
    time.sleep(0.2)
    holder.commit()  # …but the order notification gets the next turn
    for thread in (bulk, order):
        thread.join(5)
    rows = holder.execute("SELECT who FROM t ORDER BY k").fetchall()
    assert rows == [("holder",), ("order",), ("broadcast",)]
    holder.close()
