"""A worker process builds its runtime once, as it boots, and its jobs share it; a worker
that cannot build one stops at once, saying why, instead of failing every job it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from engine.settings import Settings
from engine.store.db import Database
from engine.worker.broker import CRITICAL, middleware_stack
from engine.worker.runtime import Booted, Runtime
from tests.engine.conftest import ROOT, env_for


def test_jobs_share_the_runtime_built_when_their_worker_booted(
    settings: Settings, db: Database
) -> None:
    broker = StubBroker(middleware=middleware_stack())
    broker.declare_queue(CRITICAL)
    booted = Booted(settings)
    broker.add_middleware(booted)
    seen: list[Runtime] = []

    def job() -> None:
        seen.append(booted.runtime)

    actor = dramatiq.actor(job, broker=broker, queue_name=CRITICAL)
    with pytest.raises(RuntimeError, match="not booted"):
        _ = booted.runtime
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=20)
    worker.start()
    try:
        built = booted.runtime
        for _ in range(4):
            actor.send()
        broker.join(CRITICAL, timeout=10_000)
        worker.join()
    finally:
        worker.stop(timeout=10_000)
        broker.close()
    assert seen == [built] * 4
    # the installation's webhook secret, which only the database holds, was read at boot
    assert built.settings.webhook_secret and not settings.webhook_secret
    with pytest.raises(RuntimeError, match="not booted"):
        _ = booted.runtime  # closed with the worker


def test_a_worker_without_a_migrated_database_stops_at_boot_saying_why(
    settings: Settings, tmp_path: Path
) -> None:
    empty = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    done = subprocess.run(
        [sys.executable, "-m", "engine.worker.process", "--queues", CRITICAL],
        cwd=ROOT,
        env=env_for(empty),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "run `tidings migrate`" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
