"""Every Redis key Tidings reads or writes, in one place, under one prefix.

Two installations (or a database moved to a new URL) may share one Redis server: each
key carries the installation's prefix, `TIDINGS_REDIS_PREFIX`, or by default one derived
from the database URL, so neither reads the other's caps, rate limits, process
heartbeats or queues. Dramatiq's queues use the same prefix through its `namespace`.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from engine.settings import Settings


def database_identity(database_url: str) -> str:
    """The database URL without its password; a SQLite file by its absolute path."""
    from sqlalchemy.engine import make_url  # SQLAlchemy's own reading of the URL

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        url = url.set(database=str(Path(url.database).resolve()))
    return url.render_as_string(hide_password=True)


def prefix(settings: Settings) -> str:
    """`TIDINGS_REDIS_PREFIX`, or `tidings-` and 10 hex digits of the database's identity."""
    if settings.redis_prefix:
        return settings.redis_prefix
    return database_prefix(settings.database_url)


def database_prefix(database_url: str) -> str:
    """`tidings-` and 10 hex digits of the database's identity."""
    digest = hashlib.sha256(database_identity(database_url).encode()).hexdigest()
    return f"tidings-{digest[:10]}"


class BadDatabaseUrl(ValueError):
    """`TIDINGS_DATABASE_URL` cannot be read as a database URL."""


def prefix_from_child(settings: Settings) -> str:
    """`prefix(settings)`, derived in a short-lived child process when it has to be.

    For a process that lives long and otherwise never touches SQL (the supervisor of
    `tidings worker`): reading the URL as SQLAlchemy does loads SQLAlchemy, ~12 MB that
    would stay resident for nothing. The URL goes over a pipe, not the command line,
    so its password never shows in `ps`. Raises `BadDatabaseUrl` (its message names the
    setting) when SQLAlchemy cannot read the URL, `RuntimeError` when the child failed
    otherwise.
    """
    if settings.redis_prefix:
        return settings.redis_prefix
    child = subprocess.run(
        [sys.executable, "-c", "from engine.store.redis_keys import _child; _child()"],
        input=settings.database_url,
        capture_output=True,
        text=True,
        check=False,
    )
    error = child.stderr.strip()
    if child.returncode == 2:
        raise BadDatabaseUrl(f"TIDINGS_DATABASE_URL: {error}")
    if child.returncode != 0:
        raise RuntimeError(f"deriving the Redis prefix failed: {error[-500:]}")
    return child.stdout.strip()


def _child() -> None:
    """`prefix_from_child`'s other side: a URL on stdin, its prefix on stdout; exit
    status 2 and SQLAlchemy's message on stderr for a URL it cannot read."""
    from sqlalchemy.exc import ArgumentError

    try:
        print(database_prefix(sys.stdin.read()))
    except ArgumentError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)


def counters_url(settings: Settings) -> str:
    """`TIDINGS_REDIS_URL` pointed at database `TIDINGS_COUNTERS_REDIS_DB`.

    (A `db=` argument beside a URL that names a database is ignored by redis-py: the
    URL's number wins, which put the counters in the broker's database.)
    """
    parts = urlsplit(settings.redis_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"]
    if parts.scheme == "unix":  # the path is the socket's; the database goes in the query
        query.append(("db", str(settings.counters_redis_db)))
        return f"unix://{parts.netloc}{parts.path}?{urlencode(query)}"
    path = f"/{settings.counters_redis_db}"
    return urlunsplit(parts._replace(path=path, query=urlencode(query)))


class RedisKeys:
    """Key names for one installation. Counters live in `TIDINGS_COUNTERS_REDIS_DB`,
    Dramatiq's queues in the database of `TIDINGS_REDIS_URL`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # Dramatiq's `namespace`: its queues are `{namespace}:{queue}`, delayed ones
        # `{queue}.DQ`, dead letters `{queue}.XQ`, unacked `__acks__.{worker}.{queue}`.
        self.dramatiq = f"{prefix}:dramatiq"

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisKeys:
        return cls(prefix(settings))

    def cap(self, recipient_id: str, counter: str) -> str:
        """A recipient's cap counter: a sorted set of notification ids by when they went."""
        return f"{self.cap_prefix}{recipient_id}:{counter}"

    @property
    def cap_prefix(self) -> str:
        """What every cap counter's key begins with (`cap`)."""
        return f"{self.prefix}:cap:"

    @property
    def caps_ready(self) -> str:
        """The sentinel saying the cap counters are complete (gone when Redis lost data)."""
        return f"{self.prefix}:caps:ready"

    @property
    def caps_rebuilding(self) -> str:
        """The lock held while the cap counters are rebuilt from SQL."""
        return f"{self.prefix}:caps:rebuilding"

    def rate(self, channel: str, per: int, window: int) -> str:
        """A channel's shared rate limit counter for one window of `per` seconds."""
        return f"{self.prefix}:rate:{channel}:{per}:{window}"

    @property
    def processes(self) -> str:
        """Pattern of the supervised processes' heartbeats."""
        return f"{self.prefix}:supervisor:*"

    def process(self, host: str, pid: int) -> str:
        """One supervisor's heartbeat: its processes, restarts and last exit."""
        return f"{self.prefix}:supervisor:{host}:{pid}"

    @property
    def keys_revoked(self) -> str:
        """The counter every API key revocation bumps; API processes drop their cache of
        live keys when it moves (`engine.api.keycache`)."""
        return f"{self.prefix}:keys:revoked"

    @property
    def scheduler_ran(self) -> str:
        """When the scheduler last finished a tick (ISO 8601), for `tidings status`."""
        return f"{self.prefix}:scheduler:last-run"

    def console_signed_out(self, session_id: str) -> str:
        """Held while a console session that signed out would still be within its age."""
        return f"{self.prefix}:console:signed-out:{session_id}"

    def page_link_sent(self, recipient_id: str) -> str:
        """Held while a recipient's emailed page link may not be sent again."""
        return f"{self.prefix}:page-link:{recipient_id}"

    @property
    def events_drain(self) -> str:
        """Set while a drain of delivery events is on its way (expires on its own)."""
        return f"{self.prefix}:events:drain"

    def queue(self, queue: str) -> str:
        return f"{self.dramatiq}:{queue}"

    def delayed(self, queue: str) -> str:
        return f"{self.dramatiq}:{queue}.DQ"

    def wake(self, queue: str) -> str:
        """A queue's wake-up list: a token pushed on enqueue wakes an idle consumer."""
        return f"{self.dramatiq}:{queue}.wake"

    def wake_worker(self, broker_id: str) -> str:
        """One worker process's own wake-up list, to wake its consumers when it stops."""
        return f"{self.dramatiq}:__wake__.{broker_id}"

    def dead(self, queue: str) -> str:
        return f"{self.dramatiq}:{queue}.XQ"

    @property
    def unacked(self) -> str:
        """Pattern of the per-worker sets of messages being worked on."""
        return f"{self.dramatiq}:__acks__.*"

    def alive(self, holder: str) -> str:
        """A worker process's liveness key: its claims' leases hold while it exists."""
        return f"{self.prefix}:alive:{holder}"

    @property
    def broker_sentinel(self) -> str:
        """Kept beside Dramatiq's queues: gone when Redis lost them (`engine.worker.sentinel`)."""
        return f"{self.prefix}:sentinel"
