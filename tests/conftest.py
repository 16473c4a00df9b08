"""Shared fixtures: a migrated database (SQLite, or PostgreSQL where asked), a real Redis,
a real RabbitMQ where asked, the API served over real HTTP on a free port, and API keys."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from engine.api.app import create_app
from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database, migrate
from tests.support import Server

POSTGRES_ADMIN = os.environ.get(
    "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Tests own two Redis database numbers and flush them; production defaults use 0 and 1.
# TIDINGS_TEST_REDIS_DB moves the pair (N, N+1) and TIDINGS_TEST_REDIS_PORT the server, so
# two checkouts can run their suites at once. Under pytest-xdist, worker gwK takes the
# pair two below worker gw(K-1)'s: (14, 15), (12, 13), (10, 11) …
REDIS_PORT = int(os.environ.get("TIDINGS_TEST_REDIS_PORT", "6379"))
_XDIST = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
BROKER_DB = int(os.environ.get("TIDINGS_TEST_REDIS_DB", "14")) - 2 * int(_XDIST[2:] or 0)
if BROKER_DB < 4:  # 0 and 1 are an installation's defaults, 2 and 3 the benchmark's
    raise pytest.UsageError(
        f"test worker {_XDIST} would flush Redis database {BROKER_DB}: give "
        "TIDINGS_TEST_REDIS_DB a higher number or run fewer processes"
    )
COUNTERS_DB = BROKER_DB + 1
# Tests that run on RabbitMQ get a virtual host of their session's own on this server.
RABBITMQ_URL = os.environ.get("TIDINGS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"tidings_test_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not answering at {POSTGRES_ADMIN}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite by default; tests parametrize this with "postgres" to run on both."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp_path / 'tidings.db'}"


def _reset_postgres(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def _rabbitmqctl(*args: str) -> None:
    try:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {exc} {detail.decode()[-500:]}")


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host for this test session, deleted afterwards: its URL."""
    name = f"tidings_test_{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    user = RABBITMQ_URL.split("//", 1)[1].split(":", 1)[0]
    _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
    yield f"{RABBITMQ_URL}/{name}"
    _rabbitmqctl("delete_vhost", name)


@pytest.fixture(params=["redis"])
def broker_url(request: pytest.FixtureRequest) -> str | None:
    """Where the queues live: Redis by default; tests parametrize this with "rabbitmq"
    to run on both."""
    if request.param != "rabbitmq":
        return None
    url: str = request.getfixturevalue("rabbitmq_vhost")
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from engine.worker.broker import QUEUES

    broker = RabbitmqBroker(url=url, middleware=[])
    try:
        for queue in QUEUES:  # nothing left over from an earlier test
            broker.get_queue_message_counts(queue)
            broker.flush(queue)
    finally:
        broker.close()
    return url


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The test broker database of a real Redis, flushed before and after."""
    client = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=BROKER_DB)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not answering on 127.0.0.1:{REDIS_PORT}: {exc}")
    client.flushdb()
    counters = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB)
    counters.flushdb()
    yield client
    client.flushdb()
    counters.flushdb()
    counters.close()
    client.close()


@pytest.fixture
def settings(database_url: str, broker_url: str | None, redis_client: redis.Redis) -> Settings:
    return Settings(
        database_url=database_url,
        broker_url=broker_url,
        redis_url=f"redis://127.0.0.1:{REDIS_PORT}/{BROKER_DB}",
        counters_redis_db=COUNTERS_DB,
        secret_key="test-secret",
        # The tests' sinks (SMTP, webhooks, gateways) listen on this machine.
        outbound_allow="127.0.0.0/8,::1",
        max_bulk_recipients=50,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """A migrated database."""
    migrate(settings)
    database = Database(settings)
    yield database
    database.close()


@pytest.fixture
def server(settings: Settings, db: Database) -> Iterator[Server]:
    running = Server(create_app(settings)).start()
    yield running
    running.stop()


def _key(db: Database, scopes: list[str]) -> str:
    with db.session() as session:
        return keys.create(session, name="test-" + "-".join(scopes), scopes=scopes)[1]


@pytest.fixture
def admin(server: Server, db: Database) -> Iterator[httpx.Client]:
    """An HTTP client holding an admin key."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {_key(db, ['admin'])}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def api_keys(db: Database) -> dict[str, str]:
    """One plain key per scope."""
    return {scope: _key(db, [scope]) for scope in keys.SCOPES}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (Playwright `Browser`) per browser test module: Playwright's
    sync API holds an event loop while it runs, so it must not outlive the module."""
    from playwright.sync_api import sync_playwright

    from tests.browser import ARGS, CHROMIUM

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()
