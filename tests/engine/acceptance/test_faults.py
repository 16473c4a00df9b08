"""The fault suite: real processes, real faults, each case bounded to about a minute.

Every case runs a small broadcast (a few hundred webhook recipients, a sink that answers
slowly so the fault lands mid-send) and asserts what a user would notice: nothing
accepted is lost, no recipient gets two distinct messages (the sink counts distinct
`webhook-id`s; a re-send of the same message is allowed and counted), caps stay exact
(a recipient capped at one a day got the first message and not a second), and the
pipeline recovers within 60 s of the fault. The stall timer stays at its default
(300 s): recovery must come from elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func
from sqlmodel import col, select

from engine.api.app import create_app
from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database, migrate
from engine.store.models import Delivery
from tests.conftest import BROKER_DB, COUNTERS_DB, REDIS_PORT
from tests.engine.broadcasts import audience as broadcast_audience
from tests.engine.broadcasts import ended, health_watched, processes_view, workers
from tests.engine.conftest import Processes, send, wait_for
from tests.support import Server, Sink, free_port

RECOVERY = 60.0
COUNT = 300
SLOW_SINK = 1.0  # seconds each webhook request takes: the fault lands mid-send
CAPPED: dict[str, Any] = {
    "name": "Flash sale",
    "kind": "promotional",
    "priority": "high",
    "channels": ["webhook"],
    "caps": [{"count": 1, "per": 86400}],
    "over_cap": "drop",
    "templates": {"webhook": {"en": {"title": "Sale for {{ recipient.id }}", "body": "today"}}},
}
ORDER: dict[str, Any] = {
    "name": "Order",
    "kind": "transactional",
    "priority": "critical",
    "channels": ["webhook"],
    "templates": {"webhook": {"en": {"title": "Order {{ data.n }}", "body": "is here"}}},
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The stall timer at its default: a case that recovers only through it fails. Deliver
    jobs of 20, so a broadcast is more jobs than a worker fetches ahead and a fault finds
    some of them still waiting in the broker."""
    return settings.model_copy(
        update={"stall_after": Settings().stall_after, "deliver_chunk_size": 20}
    )


@pytest.fixture
def slow_sink(sink: tuple[Sink, str]) -> tuple[Sink, str]:
    receiver, url = sink
    receiver.delay = SLOW_SINK
    return receiver, url


@dataclass
class Outcome:
    """What a case measured, for the assertions and the report."""

    recovered_s: float
    sent_requests: int
    resends: int


def audience(db: Database, url: str, count: int = COUNT, prefix: str = "r") -> list[str]:
    """`count` recipients `{prefix}0000…` with their own webhook path and quiet hours off."""
    return broadcast_audience(db, url, count, prefix=prefix, width=4, quiet_hours=False)


def statuses(db: Database, notification_id: str) -> dict[str, int]:
    with db.session() as session:
        rows = session.exec(
            select(Delivery.status, func.count())
            .where(col(Delivery.notification_id) == int(notification_id))
            .group_by(col(Delivery.status))
        ).all()
    return {status: int(n) for status, n in rows}


def recover(db: Database, notification_id: str, count: int, since: float) -> float:
    """Seconds from `since` (monotonic) until all `count` deliveries ended; fails past 60 s."""
    left = RECOVERY - (time.monotonic() - since)
    try:
        wait_for(lambda: ended(db, notification_id) == count, timeout=max(left, 1), every=0.2)
    except AssertionError as stuck:
        raise AssertionError(f"not recovered: {statuses(db, notification_id)}") from stuck
    return time.monotonic() - since


def exactly_once(receiver: Sink, paths: list[str], recovered_s: float) -> Outcome:
    """Each path got exactly one distinct message; counts the re-sends of the same one."""
    ids: dict[str, set[str]] = defaultdict(set)
    total = 0
    with receiver.lock:
        for path, headers, _ in receiver.requests:
            if path.startswith("/hook/"):
                ids[path].add(headers["webhook-id"])
                total += 1
    lost = [p for p in paths if p not in ids]
    doubled = {p: v for p, v in ids.items() if len(v) > 1}
    assert not lost, f"{len(lost)} recipients got nothing, e.g. {lost[:5]}"
    assert not doubled, f"{len(doubled)} recipients got two distinct messages"
    return Outcome(recovered_s, total, total - len(paths))


def capped_again(admin: httpx.Client, db: Database, count: int, uncapped: int = 0) -> None:
    """Caps exact: the same capped category again reaches none of the `count` who had
    their one a day, and does reach the `uncapped` who had none."""
    again = send(admin, category="promo.capped", to={"all": True})
    wait_for(lambda: ended(db, again) == count + uncapped, timeout=30, every=0.2)
    expected = {"suppressed": count, "delivered": uncapped} if uncapped else {"suppressed": count}
    assert statuses(db, again) == expected


def report(name: str, outcome: Outcome) -> None:
    print(
        f"\nfault {name}: recovered in {outcome.recovered_s:.1f} s, "
        f"{outcome.sent_requests} requests, {outcome.resends} re-sends of the same message"
    )


def start_broadcast(
    admin: httpx.Client, db: Database, receiver: Sink, url: str, until: int = 30
) -> tuple[str, list[str]]:
    admin.put("/v1/categories/promo.capped", json=CAPPED).raise_for_status()
    ids = audience(db, url)
    nid = send(admin, category="promo.capped", to={"all": True})
    wait_for(lambda: len(receiver.requests) >= until, timeout=30, every=0.01)
    return nid, [f"/hook/{i}" for i in ids]


def test_worker_sigkill_mid_broadcast(
    admin: httpx.Client, processes: Processes, db: Database, slow_sink: tuple[Sink, str]
) -> None:
    receiver, url = slow_sink
    processes.worker(threads=2)
    processes.scheduler()
    nid, paths = start_broadcast(admin, db, receiver, url)
    processes.kill("worker")
    assert ended(db, nid) < COUNT, "the broadcast finished before the fault"
    fault_over = time.monotonic()
    processes.worker("worker-2", threads=2)
    outcome = exactly_once(receiver, paths, recover(db, nid, COUNT, fault_over))
    report("worker SIGKILL", outcome)
    assert statuses(db, nid) == {"delivered": COUNT}
    capped_again(admin, db, COUNT)


class OwnRedis:
    """A Redis server of the test's own, on its own port, keeping nothing on disk: a
    stop loses its data, as a restart without persistence does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (initdb in a temporary directory, its own
    port), run as the `postgres` user, so that stopping it touches nothing shared."""

    def __init__(self) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not versions or os.geteuid() != 0 or shutil.which("runuser") is None:
            pytest.skip("needs root, runuser and Debian's PostgreSQL server binaries")
        self.bin = versions[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self._as_postgres(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "--no-instructions",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    cluster = OwnPostgres()
    cluster.start()
    yield cluster
    cluster.remove()


def key(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {
            "Authorization": f"Bearer {keys.create(session, name='faults', scopes=['admin'])[1]}"
        }


def test_redis_flushed_mid_broadcast(
    admin: httpx.Client,
    pipeline: Processes,
    db: Database,
    slow_sink: tuple[Sink, str],
    redis_client: redis.Redis,
) -> None:
    receiver, url = slow_sink
    nid, paths = start_broadcast(admin, db, receiver, url)
    for number in (BROKER_DB, COUNTERS_DB):  # a restart without persistence
        with redis.Redis(port=REDIS_PORT, db=number) as client:
            client.flushdb()
    fault_over = time.monotonic()
    assert ended(db, nid) < COUNT, "the broadcast finished before the fault"
    outcome = exactly_once(receiver, paths, recover(db, nid, COUNT, fault_over))
    report("Redis flushed", outcome)
    assert statuses(db, nid) == {"delivered": COUNT}
    capped_again(admin, db, COUNT)


def test_redis_stopped_and_started_mid_broadcast(
    settings: Settings,
    db: Database,
    own_redis: OwnRedis,
    slow_sink: tuple[Sink, str],
    tmp_path: Path,
) -> None:
    receiver, url = slow_sink
    local = settings.model_copy(update={"redis_url": own_redis.url, "counters_redis_db": 1})
    api = Server(create_app(local)).start()
    procs = Processes(local, tmp_path)
    try:
        with httpx.Client(base_url=api.url, headers=key(db), timeout=30) as admin:
            admin.put("/v1/categories/order.hook", json=ORDER).raise_for_status()
            procs.worker(threads=2)
            procs.scheduler()
            nid, paths = start_broadcast(admin, db, receiver, url)
            own_redis.stop()
            assert ended(db, nid) < COUNT, "the broadcast finished before the fault"
            (late,) = audience(db, url, 1, prefix="x")
            # Accepted while Redis is down: in SQL, sent once Redis is back.
            outage = send(admin, category="order.hook", to=[late], data={"n": 1})
            time.sleep(3)
            own_redis.start()  # empty: it kept nothing
            fault_over = time.monotonic()
            took = recover(db, nid, COUNT, fault_over)
            wait_for(lambda: ended(db, outage) == 1, timeout=RECOVERY, every=0.2)
            took = max(took, time.monotonic() - fault_over)
            outcome = exactly_once(receiver, [*paths, f"/hook/{late}"], took)
            report("Redis stopped and started", outcome)
            assert statuses(db, nid) == {"delivered": COUNT}
            assert statuses(db, outage) == {"delivered": 1}
            capped_again(admin, db, COUNT, uncapped=1)  # the late recipient had no promotion
    finally:
        procs.stop_all()
        api.stop()


def test_postgres_stopped_and_started_mid_broadcast(
    settings: Settings, own_postgres: OwnPostgres, slow_sink: tuple[Sink, str], tmp_path: Path
) -> None:
    receiver, url = slow_sink
    local = settings.model_copy(update={"database_url": own_postgres.url})
    migrate(local)
    db = Database(local)
    api = Server(create_app(local, database=db)).start()
    procs = Processes(local, tmp_path)
    try:
        with httpx.Client(base_url=api.url, headers=key(db), timeout=30) as admin:
            procs.worker(threads=2)
            procs.scheduler()
            nid, paths = start_broadcast(admin, db, receiver, url)
            assert ended(db, nid) < COUNT, "the broadcast finished before the fault"
            own_postgres.stop()
            refused = admin.post(
                "/v1/notifications", json={"category": "promo.capped", "to": ["r0000"]}
            )
            time.sleep(3)
            own_postgres.start()
            fault_over = time.monotonic()
            outcome = exactly_once(receiver, paths, recover(db, nid, COUNT, fault_over))
            report("PostgreSQL stopped and started", outcome)
            assert statuses(db, nid) == {"delivered": COUNT}
            capped_again(admin, db, COUNT)
            # While SQL was unreachable the API said so, and when to come back.
            assert refused.status_code == 503 and "Retry-After" in refused.headers
    finally:
        procs.stop_all()
        api.stop()
        db.close()


def test_api_killed_mid_burst(
    settings: Settings, processes: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    count = 150
    ids = audience(db, url, count, prefix="o")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = key(db)
    processes.start("api", "api", "--port", str(port))
    processes.worker(threads=2)
    processes.scheduler()

    def up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=30)
    httpx.put(f"{base}/v1/categories/order.hook", json=ORDER, headers=headers).raise_for_status()
    accepted: dict[int, str] = {}
    lock = threading.Lock()

    def post(client: httpx.Client, i: int) -> None:
        body = {"category": "order.hook", "to": [ids[i]], "data": {"n": i}}
        try:
            answer = client.post(
                "/v1/notifications", json=body, headers={"Idempotency-Key": f"burst-{i}"}
            )
        except httpx.HTTPError:
            return
        if answer.status_code == 202:
            with lock:
                accepted[i] = answer.json()["id"]

    def burst() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
            for i in range(count):
                post(client, i)

    sender = threading.Thread(target=burst)
    sender.start()
    wait_for(lambda: len(accepted) >= 40, timeout=30, every=0.01)
    processes.kill("api")
    sender.join()
    before = dict(accepted)
    assert len(before) < count, "the burst finished before the fault"
    processes.start("api-2", "api", "--port", str(port))
    wait_for(up, timeout=30)
    fault_over = time.monotonic()
    # A client retries what got no answer, with the same idempotency key.
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        for i in range(count):
            if i not in before:
                post(client, i)
    assert len(accepted) == count
    assert all(accepted[i] == before[i] for i in before)  # a 202 stays that notification
    assert len(set(accepted.values())) == count

    def delivered() -> bool:
        return all(ended(db, nid) == 1 for nid in accepted.values())

    wait_for(delivered, timeout=RECOVERY, every=0.5)
    outcome = exactly_once(receiver, [f"/hook/{i}" for i in ids], time.monotonic() - fault_over)
    report("API killed mid-burst", outcome)
    for nid in accepted.values():
        assert statuses(db, nid) == {"delivered": 1}


POISON: dict[str, Any] = {
    "name": "Division",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp", "webhook"],
    # Only the recipient whose id has five characters divides by zero.
    "templates": {
        ch: {"en": {"title": "{{ 10 // (recipient.id | length - 5) }}", "body": "b"}}
        for ch in ("inapp", "webhook")
    },
}


def test_poison_template_beside_healthy_sends(
    admin: httpx.Client, pipeline: Processes, db: Database, sink: tuple[Sink, str]
) -> None:
    receiver, url = sink
    healthy = audience(db, url, 100, prefix="healthy-")
    (poison,) = audience(db, url, 1, prefix="p")  # "p0000": five characters
    admin.put("/v1/categories/promo.div", json=POISON).raise_for_status()
    started = time.monotonic()
    nid = send(admin, category="promo.div", to=[*healthy, poison])
    wait_for(lambda: ended(db, nid) == 2 * 101, timeout=RECOVERY, every=0.2)
    took = time.monotonic() - started
    outcome = exactly_once(receiver, [f"/hook/{i}" for i in healthy], took)
    report("poison template", outcome)
    view = admin.get(f"/v1/notifications/{nid}", params={"limit": 1000}).json()
    for d in view["deliveries"]:
        if d["recipient"] == poison:
            assert d["status"] == "failed" and "ZeroDivisionError" in d["error"], d
        else:
            assert d["status"] == "delivered", d
    assert f"/hook/{poison}" not in receiver.by_path()


def test_worker_process_killed_under_tidings_up(
    processes: Processes, db: Database, slow_sink: tuple[Sink, str]
) -> None:
    receiver, url = slow_sink
    port = free_port()
    up = processes.start("up", "up", "--port", str(port), "--processes", "1")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=key(db), timeout=10) as client:
        wait_for(lambda: (v := processes_view(client)) and v["running"] == 4, timeout=60)
        with health_watched(client, every=0.1) as failures:
            nid, paths = start_broadcast(client, db, receiver, url)
            (general,) = workers(up.pid, "normal")
            os.kill(general, signal.SIGKILL)
            fault_over = time.monotonic()
            assert ended(db, nid) < COUNT, "the broadcast finished before the fault"
            outcome = exactly_once(receiver, paths, recover(db, nid, COUNT, fault_over))
        report("worker process killed under tidings up", outcome)
        assert failures == []
        assert statuses(db, nid) == {"delivered": COUNT}
        capped_again(client, db, COUNT)
        # The supervisor writes its view every 2 s: wait for one written after the restart.
        view = wait_for(lambda: (v := processes_view(client)) and v["restarts"] and v, timeout=10)
        assert view["restarts"] == 1
