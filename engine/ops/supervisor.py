"""Keeps Tidings' processes running: one that dies is started again, the rest carry on.

`tidings worker` and `tidings up` run their processes (each Dramatiq worker process, and
under `up` the scheduler and the API) as children of a `Supervisor`. A child that exits
while it was meant to run is started again at once, then after a backoff that doubles
(to 30 s) while it keeps dying within a minute of starting. Nothing a killed worker held
is lost: its unacknowledged messages go back to the queue and SQL knows what it claimed.

Every few seconds the supervisor writes what it runs — each process, how often it was
restarted, its last exit and when — to a Redis key of its own with a short TTL, so the
API's `readyz` and `tidings status` can say a worker restarted and when, and a vanished
supervisor drops out by itself. A Redis that lost its data has it back on the next beat.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis

from engine.store.redis_keys import RedisKeys
from engine.timeutil import now

log = logging.getLogger("tidings.supervisor")

BEAT_SECONDS = 2.0
BEAT_TTL = 10
# A child that ran this long before it died is restarted at once; one that dies sooner
# waits FIRST_BACKOFF, doubling up to MAX_BACKOFF, so a crash loop does not spin.
STEADY_SECONDS = 60.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Spec:
    """A process to keep running: its name, command line and environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None


@dataclass
class Child:
    """One supervised process and what happened to it."""

    spec: Spec
    process: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    started_mono: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    last_exit: dict[str, Any] | None = field(default=None)

    def view(self) -> dict[str, Any]:
        running = self.process is not None and self.process.poll() is None
        return {
            "name": self.spec.name,
            "pid": self.process.pid if running and self.process else None,
            "running": running,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


def describe_exit(code: int) -> str:
    """`exited with 3` or `killed by SIGKILL` for a Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


class Supervisor:
    """Starts its children, restarts any that die, stops them all on SIGTERM or SIGINT.

    `on_exit(pid)` runs after a child died (e.g. to mark its metrics dead); `client` is
    the Redis the heartbeat goes to (None: no heartbeat), under a key from `keys`.
    """

    def __init__(
        self,
        specs: Sequence[Spec],
        *,
        role: str,
        client: redis.Redis | None = None,
        keys: RedisKeys | None = None,
        on_exit: Callable[[int], None] | None = None,
        grace: float = 20.0,
    ) -> None:
        self.children = [Child(spec) for spec in specs]
        self.role = role
        self.client = client
        self.on_exit = on_exit
        self.grace = grace
        self.started_at = now()
        if client is not None and keys is None:
            raise ValueError("a heartbeat needs the installation's Redis keys")
        self.key = keys.process(socket.gethostname(), os.getpid()) if keys else ""
        self._stopping = False
        self._next_beat = 0.0

    def _start(self, child: Child) -> None:
        env = dict(child.spec.env) if child.spec.env is not None else None
        child.process = subprocess.Popen(list(child.spec.argv), env=env)
        child.started_at = now()
        child.started_mono = time.monotonic()
        child.restart_at = None

    def _exited(self, child: Child, code: int) -> None:
        assert child.process is not None
        pid = child.process.pid
        ran = time.monotonic() - child.started_mono
        child.last_exit = {"at": now().isoformat(), "pid": pid, "how": describe_exit(code)}
        child.process = None
        if self.on_exit is not None:
            self.on_exit(pid)
        if ran >= STEADY_SECONDS:
            child.backoff = 0.0
        else:
            child.backoff = min(max(child.backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
        child.restart_at = time.monotonic() + child.backoff
        log.warning(
            "%s (pid %d) %s after %.1f s; starting it again",
            child.spec.name,
            pid,
            describe_exit(code),
            ran,
            extra={"child": child.spec.name, "child_pid": pid, "exit": code},
        )

    def poll(self) -> None:
        """One pass: note children that exited, restart those whose backoff has passed."""
        for child in self.children:
            if child.process is not None:
                code = child.process.poll()
                if code is not None and not self._stopping:
                    self._exited(child, code)
            if (
                child.process is None
                and child.restart_at is not None
                and time.monotonic() >= child.restart_at
                and not self._stopping
            ):
                child.restarts += 1
                self._start(child)
        if self.client is not None and time.monotonic() >= self._next_beat:
            self.beat()

    def view(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat(),
            "seen_at": now().isoformat(),
            "processes": [child.view() for child in self.children],
        }

    def beat(self) -> None:
        """Write this supervisor's view to Redis (best effort: Redis may be down)."""
        assert self.client is not None
        self._next_beat = time.monotonic() + BEAT_SECONDS
        try:
            self.client.set(self.key, json.dumps(self.view()), ex=BEAT_TTL)
        except redis.RedisError as exc:
            log.debug("heartbeat not written: %s", exc)

    def stop(self, *_: object) -> None:
        """Ask every child to stop (SIGTERM); `run` then waits for them."""
        self._stopping = True
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)

    def start(self) -> None:
        """Start every child."""
        for child in self.children:
            self._start(child)

    def run(self, every: float = 0.2) -> int:
        """Start the children and keep them running until SIGTERM or SIGINT."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        self.start()
        try:
            while not self._stopping:
                self.poll()
                time.sleep(every)
        finally:
            self.wait()
        return 0

    def wait(self) -> None:
        """Stop every child: SIGTERM, then SIGKILL for any still running after `grace`."""
        self.stop()
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if self.client is not None:
            with contextlib.suppress(redis.RedisError):
                self.client.delete(self.key)


def read(client: redis.Redis, keys: RedisKeys) -> list[dict[str, Any]]:
    """Every live supervisor's last view (those that stopped beating have expired)."""
    views = []
    for key in client.scan_iter(keys.processes, count=1000):
        raw = client.get(key)
        if raw:
            views.append(json.loads(raw))
    return sorted(views, key=lambda v: (v["host"], v["pid"]))


def summary(views: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What readyz shows: how many processes run, restarts, and the latest restart.

    `{"supervisors": 1, "running": 4, "expected": 4, "restarts": 1,
      "last_restart": {"process": "worker-1", "exited_at": "2026-…", "how": "killed by SIGKILL",
                       "restarted_at": "2026-…" or None while it waits for its backoff}}`
    """
    processes = [p for v in views for p in v["processes"]]
    exits = [p for p in processes if p["last_exit"]]
    latest = max(exits, key=lambda p: p["last_exit"]["at"], default=None)
    last = None
    if latest is not None:
        last = {
            "process": latest["name"],
            "exited_at": latest["last_exit"]["at"],
            "how": latest["last_exit"]["how"],
            "restarted_at": latest["started_at"] if latest["running"] else None,
        }
    return {
        "supervisors": len(views),
        "running": sum(1 for p in processes if p["running"]),
        "expected": len(processes),
        "restarts": sum(p["restarts"] for p in processes),
        "last_restart": last,
    }
