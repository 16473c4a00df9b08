"""What a broadcast costs the shared stores: PostgreSQL rows, bytes, WAL, commits and
backend CPU, and Redis commands and CPU, as deltas over a window.

PostgreSQL's table statistics and sizes are the run's own database's; the WAL position
is the whole cluster's, so the WAL records that touched the run's database are summed
apart with `pg_walinspect` as it is written (other work on the server writes WAL too, and
a checkpoint may recycle it before the run ends). Backend CPU is read
from /proc for the backends connected to the run's database, found in
`pg_stat_activity` every half second. Redis's figures come from `INFO` of a server the
run should have to itself (`BENCH_REDIS_PORT`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import psycopg
import redis

from scripts.benchkit.processes import TICK, _stat

TABLES = """
    select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
           pg_total_relation_size(relid), pg_relation_size(relid)
    from pg_stat_user_tables
"""


def postgres_snapshot(url: str) -> dict[str, Any]:
    """Counters of the run's database now (table rows and sizes, commits, WAL position)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select pg_stat_force_next_flush()")
        tables = {
            name: {
                "inserted": ins,
                "updated": upd,
                "hot_updated": hot,
                "deleted": dele,
                "bytes": total,
                "heap_bytes": heap,
            }
            for name, ins, upd, hot, dele, total, heap in conn.execute(TABLES).fetchall()
        }
        row = conn.execute(
            "select xact_commit, xact_rollback, blks_read, blks_hit, tup_inserted, tup_updated,"
            " tup_fetched, pg_database_size(datname), pg_current_wal_lsn()::text"
            " from pg_stat_database where datname = current_database()"
        ).fetchone()
        assert row is not None
    keys = (
        *("commits", "rollbacks", "blocks_read", "blocks_hit", "inserted", "updated"),
        *("fetched", "database_bytes", "wal_lsn"),
    )
    return {"tables": tables, **dict(zip(keys, row, strict=True))}


def postgres_delta(url: str, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed between two snapshots, with the WAL the run's database wrote."""
    tables = {}
    for name, now in after["tables"].items():
        was = before["tables"].get(name, {})
        change = {k: v - was.get(k, 0) for k, v in now.items()}
        if any(change.values()):
            tables[name] = change
    out: dict[str, Any] = {
        k: after[k] - before[k]
        for k in ("commits", "rollbacks", "blocks_read", "blocks_hit", "inserted", "updated")
    }
    out["fetched"] = after["fetched"] - before["fetched"]
    out["database_bytes"] = after["database_bytes"] - before["database_bytes"]
    out["tables"] = tables
    lsns = (after["wal_lsn"], before["wal_lsn"])
    diff = "select pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)"
    out["wal_bytes_cluster"] = int(_one(url, diff, *lsns))
    return out


def _one(url: str, sql: str, *args: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


class WalMeter(threading.Thread):
    """The WAL records that touched one database's relations, summed as they are written.

    It reads the new WAL every two seconds with `pg_walinspect` (a checkpoint may recycle
    segments before a run ends). Its own backend's CPU is reported apart.
    """

    def __init__(self, url: str, every: float = 2.0) -> None:
        super().__init__(name="bench-wal", daemon=True)
        self.every = every
        self._halt = threading.Event()
        self._conn = psycopg.connect(url, autocommit=True)
        self._conn.execute("create extension if not exists pg_walinspect")
        row = self._conn.execute(
            "select oid, pg_current_wal_flush_lsn()::text from pg_database"
            " where datname = current_database()"
        ).fetchone()
        assert row is not None
        self._pattern = f"%/{row[0]}/%"
        self._at = row[1]
        self.pid = self._conn.info.backend_pid
        self.records = self.bytes = self.fpi_bytes = 0
        self.error: str | None = None

    def _read(self) -> None:
        # Only WAL already flushed can be read.
        end = self._conn.execute("select pg_current_wal_flush_lsn()::text").fetchone()
        assert end is not None
        # Records touching this database's relations: its heap, index and page-image writes.
        row = self._conn.execute(
            "select count(*), coalesce(sum(record_length), 0), coalesce(sum(fpi_length), 0)"
            " from pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) where block_ref like %s",
            (self._at, end[0], self._pattern),
        ).fetchone()
        assert row is not None
        self.records += int(row[0])
        self.bytes += int(row[1])
        self.fpi_bytes += int(row[2])
        self._at = end[0]

    def run(self) -> None:
        while not self._halt.wait(self.every):
            try:
                self._read()
            except psycopg.Error as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join(30)
        if self.error is None:
            with contextlib.suppress(psycopg.Error):
                self._read()
        self._conn.close()
        return {
            "wal_bytes_this_database": self.bytes,
            "wal_records_this_database": self.records,
            "wal_fpi_bytes_this_database": self.fpi_bytes,
            "wal_error": self.error,
        }


class BackendCpu(threading.Thread):
    """CPU seconds of the PostgreSQL backends serving one database, sampled from /proc."""

    def __init__(self, url: str, every: float = 0.5, exclude: tuple[int, ...] = ()) -> None:
        super().__init__(name="bench-pg-cpu", daemon=True)
        self.exclude = set(exclude)
        self.url = url
        self.every = every
        self._halt = threading.Event()
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._conn = psycopg.connect(url, autocommit=True)
        self._own = self._conn.info.backend_pid
        self._look(initial=True)

    def _look(self, initial: bool = False) -> None:
        rows = self._conn.execute(
            "select pid from pg_stat_activity where datname = current_database()"
        ).fetchall()
        for (pid,) in rows:
            if pid == self._own or pid in self.exclude:
                continue
            stat = _stat(pid)
            if stat is None:
                continue
            # A backend born after the start counts all its CPU.
            self._first.setdefault(pid, stat[2] if initial else 0)
            self._last[pid] = stat[2]

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self._look()

    def finish(self) -> dict[str, Any]:
        """Stop; the backends' CPU seconds (a backend that ended between two looks loses
        its last half second)."""
        self._halt.set()
        self.join(5)
        self._look()
        self._conn.close()
        ticks = sum(self._last[p] - self._first[p] for p in self._last)
        return {"cpu_seconds": round(ticks / TICK, 2), "backends": len(self._last)}


def redis_snapshot(client: redis.Redis) -> dict[str, Any]:
    """Commands by name and the server's CPU seconds so far."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    return {"calls": calls, "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}


def redis_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    calls = {
        name: count - before["calls"].get(name, 0)
        for name, count in after["calls"].items()
        if count - before["calls"].get(name, 0)
    }
    # `info` itself is the benchmark's own: one before, one after.
    calls.pop("info", None)
    return {
        "commands": sum(calls.values()),
        "by_command": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
        "cpu_seconds": round(after["cpu"] - before["cpu"], 2),
    }
