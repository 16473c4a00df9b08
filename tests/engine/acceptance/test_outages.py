"""A database outage answered properly: while PostgreSQL is stopped the API answers 503
with Retry-After, `readyz` says the database is down, and the workers wait and resume by
themselves; a batch sent just before is never sent again. The PostgreSQL is the test's
own cluster, never the shared one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.api.app import create_app
from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database, migrate
from tests.engine.acceptance.test_recovery import RECOVERY
from tests.engine.broadcasts import BLAST, assert_one_message_each, audience, ended, resends
from tests.engine.conftest import Processes, send, wait_for
from tests.services import OwnPostgres
from tests.support import Server, Sink


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    cluster = OwnPostgres().start()
    yield cluster
    cluster.close()


@pytest.mark.slow
def test_a_stopped_database_is_answered_with_503_and_the_workers_resume(
    settings: Settings, own_postgres: OwnPostgres, sink: tuple[Sink, str], tmp_path: Path
) -> None:
    receiver, url = sink
    count = 2_000
    mine = settings.model_copy(
        update={"database_url": own_postgres.url, "stall_after": Settings().stall_after}
    )
    migrate(mine)
    db = Database(mine)
    with db.session() as session:
        key = keys.create(session, name="test", scopes=["admin"])[1]
    audience(db, url, count)
    processes = Processes(mine, tmp_path)
    api = Server(create_app(mine)).start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            client.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
            processes.worker(threads=4)
            processes.scheduler()
            nid = send(client, category="promo.blast", to={"all": True})
            wait_for(lambda: len(receiver.requests) >= 200, timeout=60, every=0.02)
            own_postgres.stop()
            stopped = time.monotonic()

            refused = client.post(
                "/v1/notifications", json={"category": "promo.blast", "to": ["r00001"]}
            )
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["Retry-After"]) > 0
            assert refused.json()["error"]["code"] == "unavailable"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["sql"] != "ok"
            assert ready.json()["checks"]["redis"] == "ok"

            time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
            own_postgres.start()
            started = time.monotonic()
            wait_for(lambda: ended(db, nid) == count, timeout=RECOVERY + 30, every=0.5)
            took = time.monotonic() - started
            assert client.get("/readyz").status_code == 200
            late = {**BLAST, "templates": {"webhook": {"en": {"title": "Late", "body": "x"}}}}
            client.put("/v1/categories/promo.late", json=late).raise_for_status()
            again = client.post(
                "/v1/notifications", json={"category": "promo.late", "to": ["r00001"]}
            )
            assert again.status_code == 202, again.text
    finally:
        processes.stop_all()
        api.stop()
        db.close()
    assert took < RECOVERY, f"recovered after {took:.0f}s"
    broadcast = Sink()
    broadcast.requests = [r for r in receiver.requests if r[2]["title"] != "Late"]
    assert_one_message_each(broadcast, count)
    assert resends(broadcast) == 0  # a batch sent before the outage kept its outcome
    assert "receipts: waiting for the database" in processes.log("worker")
