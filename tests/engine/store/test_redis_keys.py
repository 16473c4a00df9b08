"""Every Redis key carries the installation's prefix: two installations on one Redis
never read each other's caps, rate limits, heartbeats or queues."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_
from hypothesis import strategies as st

from engine.ops.status import queues
from engine.pipeline.counters import CapCheck, Counters
from engine.settings import Settings
from engine.store.redis_keys import RedisKeys, counters_url, prefix, prefix_from_child
from engine.worker.broker import Dispatcher, make_broker
from preferences.model import Cap
from tests.conftest import COUNTERS_DB, REDIS_PORT
from tests.engine.acceptance.test_pipeline import PROMO
from tests.engine.conftest import Processes, recipient, send_and_settle, wait_for

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_the_default_prefix_follows_the_database(tmp_path: Path, monkeypatch) -> None:
    a = prefix(Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    b = prefix(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    assert a != b
    assert a.startswith("tidings-")
    monkeypatch.chdir(tmp_path)
    assert prefix(Settings(database_url="sqlite:///a.db")) == a  # the same file, relatively
    pg = "postgresql://tidings:{}@db.internal:5432/tidings"
    assert prefix(Settings(database_url=pg.format("old"))) == prefix(
        Settings(database_url=pg.format("rotated"))
    )
    assert prefix(Settings(database_url=pg.format("x"))) != prefix(
        Settings(database_url=pg.format("x").replace("/tidings", "/other"))
    )
    assert prefix(Settings(database_url=pg.format("x"), redis_prefix="shop-eu")) == "shop-eu"


def test_a_second_installation_does_not_inherit_caps_or_rate_limits(
    settings: Settings, tmp_path: Path
) -> None:
    other = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'fresh.db'}"})
    first, second = Counters.from_settings(settings), Counters.from_settings(other)
    try:
        first.mark_ready(AT)
        assert not second.ready()  # the first one's sentinel says nothing about the second
        second.mark_ready(AT)

        def cap(member: str) -> list[CapCheck]:
            return [CapCheck("u-1", member, "UTC", [("g", Cap(count=1, per=86400))])]

        assert first.admit(cap("n-1"), AT) == [None]
        assert first.admit(cap("n-2"), AT) != [None]  # the first installation's cap is full
        assert second.admit(cap("n-2"), AT) == [None]  # the second one starts afresh
        assert first.take("sms", 2, 60, 5, AT) == 2
        assert second.take("sms", 2, 60, 5, AT) == 2
    finally:
        first.close()
        second.close()


def test_queues_are_apart(settings: Settings, tmp_path: Path, redis_client: redis.Redis) -> None:
    other = settings.model_copy(update={"redis_prefix": "another-shop"})
    broker = make_broker(settings)
    try:
        Dispatcher(broker).plan(1, "normal")
    finally:
        broker.close()
    mine, theirs = RedisKeys.from_settings(settings), RedisKeys.from_settings(other)
    assert queues(redis_client, mine)["normal"]["waiting"] == 1
    assert queues(redis_client, theirs)["normal"]["waiting"] == 0
    assert redis_client.llen(f"{prefix(settings)}:dramatiq:normal") == 1


def test_every_key_the_pipeline_writes_carries_the_prefix(
    settings: Settings, admin: httpx.Client, processes: Processes, redis_client: redis.Redis
) -> None:
    settings = settings.model_copy(update={"rate_email": "100/s"})
    processes.settings = settings
    processes.worker()
    processes.scheduler()
    admin.put("/v1/categories/promo.sale", json=PROMO).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com")
    send_and_settle(admin, category="promo.sale", to=["u-1"], data={"card": "Steam"})
    counters = redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB)
    try:
        wait_for(lambda: list(counters.scan_iter(f"{prefix(settings)}:supervisor:*")))
        own = [k.decode() for k in counters.scan_iter("*")]
        queued = [k.decode() for k in redis_client.scan_iter("*")]
    finally:
        counters.close()
    kinds = {key.split(":")[1] for key in own}
    assert {"cap", "rate", "supervisor"} <= kinds, own
    assert queued, "the broker wrote no keys"
    strays = [k for k in own + queued if not k.startswith(prefix(settings) + ":")]
    assert strays == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/5"),
        ("redis://:pw@cache.internal:6380", "redis://:pw@cache.internal:6380/5"),
        ("rediss://cache/3?ssl_cert_reqs=none&db=3", "rediss://cache/5?ssl_cert_reqs=none"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=5"),
    ],
)
def test_the_counters_live_in_their_own_database(url: str, expected: str) -> None:
    assert counters_url(Settings(redis_url=url, counters_redis_db=5)) == expected


@pytest.mark.parametrize("bad", ["", "has space", "a:b", "x" * 65])
def test_a_prefix_is_checked(bad: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="redis_prefix"):
        Settings(redis_prefix=bad)


_PART = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).map(
    lambda text: quote(text, safe="")
)


# Letters and digits of any script, as they stand in a file or database name.
_WORD = st.text(st.characters(whitelist_categories=("L", "N")), min_size=1, max_size=12)


@st.composite
def database_urls(draw: st.DrawFn) -> str:
    """SQLite files (absolute and relative) and PostgreSQL URLs with any user, password,
    host, port, database and query, quoted as a URL carries them, and names in any
    script."""
    if draw(st.booleans()):
        name = draw(_WORD)
        return f"sqlite:///{draw(st.sampled_from(['', '/tmp/']))}{name}.db"
    user, password = draw(_PART), draw(_PART)
    database = draw(st.one_of(_PART, _WORD))  # a database name is read as written
    host = draw(st.sampled_from(["127.0.0.1", "db.internal", "[::1]"]))
    port = draw(st.sampled_from(["", ":5432", ":6543"]))
    query = draw(st.sampled_from(["", "?sslmode=require", "?application_name=tidings&b=2"]))
    return f"postgresql://{user}:{password}@{host}{port}/{database}{query}"


@settings_(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=database_urls(), locale=st.sampled_from(["C.UTF-8", "C"]))
def test_the_supervisors_prefix_from_a_child_process_is_the_installations(
    url: str, locale: str
) -> None:
    """The workers' supervisor derives its prefix in a child process (so that it never
    loads SQLAlchemy); it must be the one every other process derives in its own, for
    either database and whatever the URL holds, in any locale the child starts in."""
    settings = Settings(database_url=url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LC_ALL", locale)
        env.delenv("PYTHONIOENCODING", raising=False)
        assert prefix_from_child(settings) == prefix(settings)
