"""Two worker hosts share one broadcast: each is a network namespace of this machine with
its own `tidings worker`, reaching the one PostgreSQL and the one Redis over its own link.
Both plan part of the audience, and every recipient gets exactly one delivery."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from scripts.benchkit.hosts import unavailable
from scripts.benchkit.scaleout import Options, scaleout
from scripts.benchkit.stores import fresh_postgres
from tests.conftest import BROKER_DB, COUNTERS_DB, POSTGRES_ADMIN, REDIS_PORT


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "worker hosts are network namespaces: making them needs root"
    return unavailable()


@pytest.mark.postgres
def test_two_worker_hosts_share_a_broadcast_exactly_once(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    if reason := _why_not():
        pytest.skip(reason)
    count = 10_000  # 20 chunks of 500: both hosts take some unless one is shut out
    with fresh_postgres(POSTGRES_ADMIN) as url:
        result = scaleout(
            Options(
                database_url=url,
                redis_port=REDIS_PORT,
                broker_db=BROKER_DB,
                counters_db=COUNTERS_DB,
                logs=tmp_path,
                recipients=count,
                chunk_size=500,
                timeout=120,
            )
        )
    hosts = result["per_host"]
    assert set(hosts) == {"tidings-host-1", "tidings-host-2"}, hosts
    for name, figures in hosts.items():
        assert figures["chunks"] > 0, f"{name} planned nothing: {hosts}"
        # What the host's own metrics counted is what SQL holds for the chunks it planned.
        assert figures["deliveries_in_its_metrics"] == figures["deliveries"] > 0
    assert sum(h["chunks"] for h in hosts.values()) == 20
    checks = result["checks"]
    assert checks["audience"] == checks["deliveries"] == count
    assert checks["recipients_with_a_delivery"] == count
    assert checks["lost"] == checks["doubled"] == checks["delivered_twice"] == 0
    assert checks["chunks_done"] == 20
    assert checks["exactly_once"]
