"""Several `tidings worker` groups on one host: each keeps its own metrics folder and
serves on its own port, on 127.0.0.1 unless configured."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx

from engine.ops import exporter
from tests.engine.conftest import Processes, wait_for
from tests.support import free_port

WORKER = ("worker", "--processes", "1", "--threads", "1")


def _started(processes: Processes, name: str) -> dict[str, object] | None:
    """The group's start line: what it serves and where."""
    for line in processes.log(name).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("serves") == "worker":
            return dict(entry)
    return None


def _listening(port: int) -> list[str]:
    """Local addresses (the kernel's hex) listening on `port`, read from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                found.append(address)
    return found


def _scrape(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def _port(url: object) -> int:
    return int(str(url).rsplit(":", 1)[1].split("/")[0])


def test_two_worker_groups_on_one_host_keep_their_own_metrics(processes: Processes) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = exporter.group_dir(gone.pid)  # left behind by a group that crashed
    stale.mkdir(parents=True, exist_ok=True)
    port = free_port()
    same = {"TIDINGS_METRICS_PORT": str(port)}

    one = processes.start("one", *WORKER, env=same)
    a = wait_for(lambda: _started(processes, "one"), timeout=60)
    assert a["metrics"] == f"http://127.0.0.1:{port}/metrics"
    mine = exporter.group_dir(one.pid)
    assert mine.is_dir() and not stale.exists()
    (mine / "probe").write_text("the first group's")

    two = processes.start("two", *WORKER, env=same)
    b = wait_for(lambda: _started(processes, "two"), timeout=60)
    assert _port(b["metrics"]) != port  # the second group took the next free port
    assert (mine / "probe").exists(), "the second group wiped the first one's metrics"
    assert exporter.group_dir(two.pid).is_dir() and exporter.group_dir(two.pid) != mine
    for url in (a["metrics"], b["metrics"]):
        assert wait_for(lambda url=url: _scrape(str(url)) is not None, timeout=20)
        assert _listening(_port(url)) == ["0100007F"], "metrics must listen on 127.0.0.1 only"
    assert processes.running["one"].poll() is None and processes.running["two"].poll() is None


def test_the_metrics_address_is_configurable(processes: Processes) -> None:
    port = free_port()
    processes.start(
        "any", *WORKER, env={"TIDINGS_METRICS_PORT": str(port), "TIDINGS_METRICS_HOST": "0.0.0.0"}
    )
    started = wait_for(lambda: _started(processes, "any"), timeout=60)
    assert started["metrics"] == f"http://0.0.0.0:{port}/metrics"
    assert _listening(port) == ["00000000"]
