"""Scale-out: one broadcast planned by worker hosts that share one PostgreSQL and one Redis.

The API and the scheduler run in the root namespace; each worker host
(`scripts.benchkit.hosts`) runs its own `tidings worker` and reaches the stores over its
own link. One inbox broadcast goes to everyone through the public API; when every
delivery is settled the run reads from SQL which host planned each chunk (the host name
in the chunk's holder id) and how many deliveries each wrote, checks every recipient got
exactly one delivery, and divides what the stores and the workers spent by the chunks.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database, migrate
from engine.store.states import IN_FLIGHT, NotificationStatus
from engine.timeutil import now
from scripts.benchkit.audience import populate, seed_caps
from scripts.benchkit.broadcast import BROADCAST, OFFER, broadcast_category, sql_timings
from scripts.benchkit.client import Api, free_port, log, wait_until
from scripts.benchkit.costs import (
    BackendCpu,
    WalMeter,
    postgres_delta,
    postgres_snapshot,
    redis_delta,
    redis_snapshot,
)
from scripts.benchkit.hosts import Rig, worker_hosts
from scripts.benchkit.processes import Fleet, Sampler

ROOT = Path(__file__).resolve().parent.parent.parent
METRICS_PORT = 9191  # each host has its own network, so every host serves on the same port


@dataclass(frozen=True)
class Options:
    database_url: str  # a fresh PostgreSQL database, as the root namespace reaches it
    redis_port: int
    broker_db: int
    counters_db: int
    logs: Path
    recipients: int = 100_000
    hosts: int = 2
    processes: int = 1  # worker processes per host
    threads: int = 1
    chunk_size: int | None = None  # recipients per plan chunk (default: the setting)
    timeout: float = 1800


def env_for(settings: Settings) -> dict[str, str]:
    """The environment a Tidings process needs to see these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"TIDINGS_{name.upper()}"] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _at(url: str, host: str) -> str:
    """`url` with its host replaced by `host` (the port kept)."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}{host}{port}"))


def scaleout(opts: Options) -> dict[str, Any]:
    """Run the broadcast over `opts.hosts` worker hosts; its figures and checks."""
    api_port = free_port()
    settings = Settings(
        database_url=opts.database_url,
        redis_url=f"redis://127.0.0.1:{opts.redis_port}/{opts.broker_db}",
        counters_redis_db=opts.counters_db,
        secret_key="bench-secret",
        public_url=f"http://127.0.0.1:{api_port}",
        metrics_port=free_port(),
        # The hosts reach the database at other addresses: without one prefix set for
        # all, each would derive its own from its URL and never see the others' queues.
        redis_prefix=f"tidings-scaleout-{os.getpid()}",
    )
    if opts.chunk_size:
        settings = settings.model_copy(update={"plan_chunk_size": opts.chunk_size})
    pg_port = urlsplit(opts.database_url).port or 5432
    result: dict[str, Any] = {
        "recipients": opts.recipients,
        "hosts": opts.hosts,
        "processes_per_host": opts.processes,
        "threads": opts.threads,
        "plan_chunk_size": settings.plan_chunk_size,
        "plan_ahead": settings.plan_ahead,
    }
    me = [sys.executable, "-m", "engine.ops.cli"]
    with ExitStack() as stack:
        migrate(settings)
        db = Database(settings)
        stack.callback(db.close)
        log(f"writing {opts.recipients:,} recipients")
        at = time.time()
        audience = populate(db, opts.recipients, "http://127.0.0.1:9/none", now())
        seed_caps(settings, audience["capped"], now())
        result["setup_seconds"] = round(time.time() - at, 1)
        result["mix"] = audience["mix"]

        rig = stack.enter_context(worker_hosts(opts.hosts, [pg_port, opts.redis_port]))
        fleet = Fleet(opts.logs, env_for(settings), ROOT)
        stack.callback(fleet.stop_all)  # before the hosts go: their processes live in them
        try:
            return _run(opts, settings, db, rig, fleet, me, api_port, result)
        except BaseException:
            for name in list(fleet.running):
                log(f"--- end of the {name} log ---\n{fleet.tail(name)}")
            raise


def _run(
    opts: Options,
    settings: Settings,
    db: Database,
    rig: Rig,
    fleet: Fleet,
    me: list[str],
    api_port: int,
    result: dict[str, Any],
) -> dict[str, Any]:
    fleet.start("api", [*me, "api", "--host", "127.0.0.1", "--port", str(api_port)])
    wait_until(
        lambda: Api(settings.public_url).call("GET", "/healthz")[0] == 200,
        timeout=60,
        what="the API",
    )
    fleet.start("scheduler", [*me, "scheduler"])
    with db.session() as session:
        _, key = keys.create(session, name="scaleout", scopes=["admin"])
    api = Api(settings.public_url, key)
    api.ok("PUT", f"/v1/categories/{BROADCAST}", broadcast_category(["inapp"]))

    worker = [*me, "worker", "--processes", str(opts.processes), "--threads", str(opts.threads)]
    for host in rig.hosts:
        own = {
            "TIDINGS_DATABASE_URL": _at(settings.database_url, host.outer),
            "TIDINGS_REDIS_URL": f"redis://{host.outer}:{opts.redis_port}/{opts.broker_db}",
            "TIDINGS_METRICS_HOST": host.inner,
            "TIDINGS_METRICS_PORT": str(METRICS_PORT),
        }
        log(f"starting {host.name}: {opts.processes} worker processes × {opts.threads} threads")
        fleet.start(host.name, host.argv(worker), own)
    for host in rig.hosts:
        wait_until(
            partial(_ready, fleet, host.name, opts.processes),
            timeout=120,
            every=0.2,
            what=f"{host.name} to start",
        )

    client = redis.Redis(port=opts.redis_port)
    pg_before, redis_before = postgres_snapshot(settings.database_url), redis_snapshot(client)
    roles = {name: process.pid for name, process in fleet.running.items()}
    roles |= {f"bridge-{i}": pid for i, pid in enumerate(rig.bridges)}
    sampler = Sampler(roles)
    wal = WalMeter(settings.database_url)
    backends = BackendCpu(settings.database_url, exclude=(wal.pid,))
    sampler.start()
    backends.start()
    wal.start()
    body = {"category": BROADCAST, "to": {"all": True}, "data": OFFER}
    try:
        notification_id = int(api.ok("POST", "/v1/notifications", body)["id"])
        result["notification"] = notification_id
        log(f"broadcast {notification_id} accepted; waiting for every delivery to settle")
        _settle(settings.database_url, notification_id, opts.timeout)
    except BaseException:
        for meter in (sampler, backends, wal):
            meter.finish()
        client.close()
        raise
    usage = sampler.finish()
    pg_cpu = backends.finish()
    wal_figures = wal.finish()
    redis_after = redis_snapshot(client)
    client.close()
    counted = {h.name: _metric(h.inner, "tidings_deliveries_total") for h in rig.hosts}
    # A backend reports its table statistics when its connection closes, at the latest.
    for name in list(fleet.running):
        fleet.stop(name)
    time.sleep(1)
    pg_after = postgres_snapshot(settings.database_url)
    timings = sql_timings(db, notification_id)
    result["seconds"] = round(timings["total"], 2)
    result["plan_seconds"] = round(timings["plan"], 2)
    result["recipients_per_s"] = round(opts.recipients / timings["total"])

    per_host = _per_host(settings.database_url, notification_id)
    for host in rig.hosts:
        figures = per_host.setdefault(host.name, {"chunks": 0, "recipients": 0, "deliveries": 0})
        figures["cpu_seconds"] = usage[host.name]["cpu_seconds"]
        figures["peak_rss_mb"] = usage[host.name]["peak_rss_mb"]
        figures["deliveries_in_its_metrics"] = counted[host.name]
    result["per_host"] = per_host
    result["checks"] = _checks(settings.database_url, notification_id)
    postgres = postgres_delta(settings.database_url, pg_before, pg_after)
    postgres |= wal_figures
    postgres["backend_cpu_seconds"] = pg_cpu["cpu_seconds"]
    postgres["backends"] = pg_cpu["backends"]
    result["postgres"] = postgres
    result["redis"] = redis_delta(redis_before, redis_after)
    bridges = sum(v["cpu_seconds"] for k, v in usage.items() if k.startswith("bridge-"))
    result["cpu_seconds"] = {
        "workers": round(sum(usage[h.name]["cpu_seconds"] for h in rig.hosts), 2),
        "api": usage["api"]["cpu_seconds"],
        "scheduler": usage["scheduler"]["cpu_seconds"],
        "postgres_backends": pg_cpu["cpu_seconds"],
        "redis": result["redis"]["cpu_seconds"],
        "bridges": round(bridges, 2),
        "machine_busy": usage["machine"]["cpu_busy_seconds"],
        "machine_available": usage["machine"]["cpu_available_seconds"],
    }
    result["per_chunk"] = _per_chunk(result)
    return result


def _ready(fleet: Fleet, name: str, processes: int) -> bool:
    fleet.check(name)
    return fleet.log_text(name).count("Worker process is ready for action") >= processes


def _settle(url: str, notification_id: int, timeout: float) -> None:
    """Wait until the notification is planned with no delivery in flight."""
    flight = [s.value for s in IN_FLIGHT]
    planned = (NotificationStatus.PLANNED.value, NotificationStatus.DONE.value)
    started = time.monotonic()
    last = started
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            time.sleep(0.5)
            row = conn.execute(
                "select status, chunks_done, chunks_total from notifications where id = %s",
                (notification_id,),
            ).fetchone()
            assert row is not None
            status, done, total = row
            if status in planned:
                busy = conn.execute(
                    "select count(*) from deliveries where notification_id = %s"
                    " and status = any(%s)",
                    (notification_id, flight),
                ).fetchone()
                if busy is not None and busy[0] == 0:
                    return
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                log(f"  {last - started:5.1f}s {status}: chunks {done}/{total}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the broadcast did not settle in {timeout:.0f}s")


def _per_host(url: str, notification_id: int) -> dict[str, dict[str, Any]]:
    """Chunks, recipients and deliveries by the host that planned them (from SQL)."""
    out: dict[str, dict[str, Any]] = {}
    with psycopg.connect(url) as conn:
        for host, chunks, size in conn.execute(
            "select split_part(claimed_by, ':', 1), count(*), sum(size) from plan_chunks"
            " where notification_id = %s group by 1 order by 1",
            (notification_id,),
        ):
            out[host or "(none)"] = {"chunks": chunks, "recipients": int(size or 0)}
        for host, count in conn.execute(
            "select split_part(c.claimed_by, ':', 1), count(d.id) from plan_chunks c"
            " join deliveries d on d.notification_id = c.notification_id"
            " and d.recipient_id between c.lo and c.hi"
            " where c.notification_id = %s group by 1",
            (notification_id,),
        ):
            out.setdefault(host or "(none)", {})["deliveries"] = count
    return out


def _checks(url: str, notification_id: int) -> dict[str, Any]:
    """Every recipient exactly one delivery, every chunk planned once, from SQL."""
    n = (notification_id,)
    queries = {
        "audience": "select count(*) from recipients",
        "deliveries": "select count(*) from deliveries where notification_id = %s",
        "recipients_with_a_delivery": "select count(distinct recipient_id) from deliveries"
        " where notification_id = %s",
        "lost": "select count(*) from recipients r where not exists (select 1 from deliveries d"
        " where d.notification_id = %s and d.recipient_id = r.id)",
        "doubled": "select count(*) from (select recipient_id from deliveries"
        " where notification_id = %s group by recipient_id, channel having count(*) > 1) t",
        "delivered_twice": "select count(*) from (select e.delivery_id from delivery_events e"
        " join deliveries d on d.id = e.delivery_id where d.notification_id = %s"
        " and e.status = 'delivered' group by e.delivery_id having count(*) > 1) t",
        "chunks": "select count(*) from plan_chunks where notification_id = %s",
        "chunks_done": "select count(*) from plan_chunks where notification_id = %s"
        " and status = 'done'",
        "chunk_retries": "select coalesce(sum(attempts), 0) from plan_chunks"
        " where notification_id = %s",
    }
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for name, sql in queries.items():
            row = conn.execute(sql, n if "%s" in sql else ()).fetchone()
            out[name] = int(row[0]) if row else None
        out["outcomes"] = {
            f"{status}/{reason}" if reason else status: count
            for status, reason, count in conn.execute(
                "select status, reason, count(*) from deliveries where notification_id = %s"
                " group by 1, 2 order by 1, 2",
                n,
            )
        }
    out["exactly_once"] = (
        out["deliveries"] == out["audience"] == out["recipients_with_a_delivery"]
        and out["lost"] == 0
        and out["doubled"] == 0
        and out["delivered_twice"] == 0
        and out["chunks_done"] == out["chunks"]
    )
    return out


def _metric(address: str, name: str) -> float | None:
    """The sum of a counter over its labels on a host's worker metrics, None if unreachable."""
    try:
        with urllib.request.urlopen(f"http://{address}:{METRICS_PORT}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _per_chunk(result: dict[str, Any]) -> dict[str, float]:
    """What one chunk costs each part, from the run's totals."""
    chunks = result["checks"]["chunks"] or 1
    pg, cpu = result["postgres"], result["cpu_seconds"]
    rows = sum(t["inserted"] for t in pg["tables"].values())
    updated = sum(t["updated"] for t in pg["tables"].values())
    table_bytes = sum(t["bytes"] for t in pg["tables"].values())
    return {
        "chunks": chunks,
        "worker_cpu_ms": round(cpu["workers"] * 1000 / chunks, 1),
        "postgres_cpu_ms": round(cpu["postgres_backends"] * 1000 / chunks, 1),
        "redis_cpu_ms": round(cpu["redis"] * 1000 / chunks, 2),
        "rows_inserted": round(rows / chunks, 1),
        "rows_updated": round(updated / chunks, 1),
        "table_bytes": round(table_bytes / chunks),
        "wal_bytes": round(pg["wal_bytes_this_database"] / chunks),
        "commits": round(pg["commits"] / chunks, 1),
        "redis_commands": round(result["redis"]["commands"] / chunks, 1),
    }
