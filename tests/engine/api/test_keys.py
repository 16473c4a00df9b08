"""API keys are listed (never their secret) and revoked from the CLI and the admin API; a
revoked key is refused on the very next request of every API process; the key cache
stays bounded; `up --demo` prints the same key every time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine.api.app import create_app
from engine.api.context import KEY_CACHE
from engine.api.keycache import KeyCache
from engine.catalog import keys
from engine.ops import demo
from engine.settings import Settings
from engine.store.db import Database
from tests.support import Server

ROOT = Path(__file__).resolve().parents[3]
TIDINGS = Path(sys.executable).with_name("tidings")


def _tidings(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_DATABASE_URL=settings.database_url,
        TIDINGS_REDIS_URL=settings.redis_url,
        TIDINGS_COUNTERS_REDIS_DB=str(settings.counters_redis_db),
        TIDINGS_SECRET_KEY=str(settings.secret_key),
    )
    return subprocess.run(
        [str(TIDINGS), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def _get(server: Server, key: str, path: str = "/v1/categories") -> int:
    answer = httpx.get(server.url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return answer.status_code


@pytest.fixture
def second(settings: Settings, db: Database) -> Iterator[Server]:
    """A second API process on the same database and Redis."""
    running = Server(create_app(settings)).start()
    yield running
    running.stop()


def test_the_cli_lists_keys_without_secrets_and_revokes_them_at_once(
    settings: Settings, db: Database, server: Server, second: Server
) -> None:
    made = _tidings(settings, "keys", "create", "--name", "billing", "--scopes", "read,send")
    assert made.returncode == 0, made.stderr
    plain = made.stdout.strip().splitlines()[-1]
    for api in (server, second):
        assert _get(api, plain) == 200
        assert _get(api, plain) == 200  # now served from the cache

    listed = _tidings(settings, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(row for row in listed.stdout.splitlines() if "billing" in row)
    assert "read,send" in line and plain not in listed.stdout
    assert keys.digest(plain) not in listed.stdout
    key_id = line.split()[0]
    deadline = time.monotonic() + 10
    while "never" in line and time.monotonic() < deadline:  # written after the answer
        time.sleep(0.2)
        listed = _tidings(settings, "keys", "list")
        line = next(row for row in listed.stdout.splitlines() if "billing" in row)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-$", line)

    revoked = _tidings(settings, "keys", "revoke", key_id)
    assert revoked.returncode == 0 and "revoked key" in revoked.stdout, revoked.stderr
    for api in (server, second):
        assert _get(api, plain) == 401
    assert _tidings(settings, "keys", "revoke", "999").returncode == 2


def test_the_admin_api_lists_and_revokes_keys(
    admin: httpx.Client, api_keys: dict[str, str], db: Database, second: Server
) -> None:
    reader = api_keys["read"]
    assert _get(second, reader) == 200
    items = admin.get("/v1/keys").json()["items"]
    assert {tuple(item["scopes"]) for item in items} >= {("read",), ("send",), ("admin",)}
    for item in items:
        assert set(item) == {"id", "name", "scopes", "created_at", "last_used_at", "revoked_at"}
    text = admin.get("/v1/keys").text
    assert reader not in text and keys.digest(reader) not in text
    target = next(item for item in items if item["scopes"] == ["read"])

    assert _get(second, api_keys["send"], "/v1/keys") == 403
    answer = admin.post(f"/v1/keys/{target['id']}/revoke")
    assert answer.status_code == 200 and answer.json()["revoked_at"]
    assert _get(second, reader) == 401  # another process, on its very next request
    assert admin.post("/v1/keys/99999/revoke").status_code == 404
    assert admin.post("/v1/keys/１/revoke").status_code == 404
    paths = admin.get("/v1/openapi.json").json()["paths"]
    assert "/v1/keys" in paths and "/v1/keys/{id}/revoke" in paths


def test_the_key_cache_stays_bounded(settings: Settings, db: Database) -> None:
    app = create_app(settings)
    app[KEY_CACHE] = KeyCache(app[KEY_CACHE].revoked, max_keys=20)
    running = Server(app).start()
    try:
        with db.session() as session:
            made = [keys.create(session, name=f"k{n}", scopes=["read"])[1] for n in range(30)]
        with httpx.Client(base_url=running.url, timeout=30) as client:
            for n in range(300):  # unknown keys are not remembered at all
                headers = {"Authorization": f"Bearer tk_unknown_{n}"}
                assert client.get("/v1/categories", headers=headers).status_code == 401
            assert len(app[KEY_CACHE]) == 0
            for plain in made:
                headers = {"Authorization": f"Bearer {plain}"}
                assert client.get("/v1/categories", headers=headers).status_code == 200
        assert len(app[KEY_CACHE]) == 20
    finally:
        running.stop()


def test_up_demo_prints_the_same_key_every_time(
    settings: Settings, db: Database, server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = []
    for _ in range(2):
        demo.load(settings, port=8080)
        printed.append(set(re.findall(r"Bearer (tk_\S+?)'", capsys.readouterr().out)))
    assert printed[0] == printed[1] and len(printed[0]) == 1
    key = printed[0].pop()
    assert _get(server, key) == 200
    with db.session() as session:
        assert [row.name for row in keys.listing(session)].count("demo") == 1
        row = next(r for r in keys.listing(session) if r.key_hash == keys.digest(key))
        keys.revoke(session, int(row.id or 0))
    assert keys.announce_revocation(settings)
    demo.load(settings, port=8080)
    fresh = re.findall(r"Bearer (tk_\S+?)'", capsys.readouterr().out)[0]
    assert fresh != key and _get(server, fresh) == 200 and _get(server, key) == 401
