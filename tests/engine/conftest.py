"""The pipeline as it runs in production: `tidings worker` and `tidings scheduler` as real
processes on a real Redis and database, a real SMTP server and a real HTTP sink."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiosmtpd.controller import Controller

from engine.settings import Settings
from tests.support import Mailbox, Server, Sink, free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server (aiosmtpd) for the whole session."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
def smtp(mailbox: tuple[Mailbox, int]) -> Iterator[Mailbox]:
    box, _ = mailbox
    box.reset()
    yield box
    box.reset()


@pytest.fixture
def sink() -> Iterator[tuple[Sink, str]]:
    """A real HTTP receiver for webhooks and gateways, served in a thread."""
    receiver = Sink()
    server = Server(receiver.app).start()
    yield receiver, server.url
    server.stop()


@pytest.fixture
def settings(settings: Settings, mailbox: tuple[Mailbox, int], sink: tuple[Sink, str]) -> Settings:
    """Test settings plus the mail server, the sink and fast retries and stall recovery."""
    return settings.model_copy(
        update={
            "smtp_port": mailbox[1],
            "sms_gateway_url": f"{sink[1]}/sms",
            "push_gateway_url": f"{sink[1]}/push",
            "retry_backoff_base": 0.2,
            "delivery_max_attempts": 3,
            "stall_after": 5,
            "enqueue_grace": 1,
            "scheduler_interval": 0.2,
            "scheduler_idle_interval": 1.0,
            "worker_timeout_ms": 20,
        }
    )


def env_for(settings: Settings) -> dict[str, str]:
    """The environment a Tidings process needs to see these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"TIDINGS_{name.upper()}"] = str(value)
    env["dramatiq_worker_timeout"] = str(settings.worker_timeout_ms)
    env["TIDINGS_METRICS_PORT"] = str(free_port())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def status_report(env: Mapping[str, str]) -> dict[str, Any]:
    """What `tidings status --json` prints, run as a process of its own with `env`."""
    out = subprocess.run(
        [sys.executable, "-m", "engine.ops.cli", "status", "--json"],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, Any] = json.loads(out.stdout)
    return report


class Processes:
    """Starts and stops Tidings processes (`tidings worker`, `tidings scheduler`)."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, dict[str, str]] = {}

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        self.env[name] = {**env_for(self.settings), **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", "engine.ops.cli", *args],
            env=self.env[name],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.running[name] = process
        return process

    def worker(self, name: str = "worker", threads: int = 4) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", "--processes", "1", "--threads", str(threads))

    def scheduler(self, name: str = "scheduler") -> subprocess.Popen[bytes]:
        return self.start(name, "scheduler")

    def kill(self, name: str) -> None:
        """SIGKILL a process and all its children, as a crash would."""
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.running.clear()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def processes(settings: Settings, db: Any, tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(settings, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def pipeline(processes: Processes) -> Processes:
    """A worker and a scheduler running against the test database and Redis."""
    processes.worker()
    processes.scheduler()
    return processes


def wait_for(check: Callable[[], T], timeout: float = 30, every: float = 0.1) -> T:
    """Poll until `check` returns something truthy; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(every)
        value = check()
    assert value, f"gave up waiting after {timeout}s; last value: {value!r}"
    return value


def send(client: httpx.Client, **body: Any) -> str:
    """POST a notification and return its id."""
    response = client.post("/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def recipient(client: httpx.Client, rid: str, *, quiet: bool = False, **fields: Any) -> None:
    """Create a recipient; quiet hours off unless asked, so tests do not depend on the clock."""
    client.put(f"/v1/recipients/{rid}", json=fields).raise_for_status()
    if not quiet:
        prefs = {"quiet_hours": {"enabled": False}}
        client.put(f"/v1/recipients/{rid}/preferences", json=prefs).raise_for_status()


def send_and_settle(client: httpx.Client, timeout: float = 30, **body: Any) -> dict[str, Any]:
    """POST a notification and wait until it is planned with nothing in flight."""
    notification_id = send(client, **body)
    return wait_for(lambda: settled(client, notification_id), timeout=timeout)


def settled(client: httpx.Client, notification_id: str) -> dict[str, Any] | None:
    """The notification once planned with nothing queued or in flight, else None."""
    view = client.get(f"/v1/notifications/{notification_id}", params={"limit": 1000}).json()
    busy = view["counts"].get("queued", 0) + view["counts"].get("sending", 0)
    return view if view["status"] in ("planned", "done") and not busy else None
