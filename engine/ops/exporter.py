"""Serving a worker group's metrics: one folder and one port per `tidings worker`.

Worker processes run in Prometheus multiprocess mode: each writes its counts to files
in a folder, and the group's supervisor serves their sum. Several groups may run on one
host (`tidings up` runs two; an operator may add more), so each group has a folder of
its own, named after its supervisor's process id, and clears only its own and those
whose supervisor is gone; and each takes the configured port or, when another group has
it, the next free one, logging where it serves. The exporter listens on 127.0.0.1
unless `TIDINGS_METRICS_HOST` says otherwise.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

log = logging.getLogger("tidings.exporter")
# Ports tried after the configured one before giving up on serving metrics.
PORTS_TRIED = 20


def base_dir() -> Path:
    """Where every group's metrics folder lives on this host."""
    return Path(tempfile.gettempdir()) / "tidings-metrics"


def group_dir(pid: int | None = None) -> Path:
    """The metrics folder of the group whose supervisor is `pid` (default: this process)."""
    return base_dir() / str(pid if pid is not None else os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prepare_group_dir() -> Path:
    """Create this group's empty folder, and remove folders of groups that are gone."""
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        if entry.name.isdigit() and entry.name.isascii() and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    path = group_dir()
    shutil.rmtree(path, ignore_errors=True)  # a folder left by an earlier process of this id
    path.mkdir()
    return path


def serve_group(path: Path, host: str, port: int) -> str | None:
    """Serve the sum of the metrics in `path` on `host`, at `port` or the next free one
    of `PORTS_TRIED`; returns the URL, or None when every port was taken."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    for candidate in range(port, min(port + PORTS_TRIED, 65535) + 1):
        try:
            start_http_server(candidate, addr=host, registry=registry)
        except OSError as exc:
            log.debug("metrics port %d: %s", candidate, exc)
            continue
        shown = f"[{host}]" if ":" in host else host
        if candidate != port:
            log.info("metrics port %d is taken; serving on %d instead", port, candidate)
        return f"http://{shown}:{candidate}/metrics"
    log.warning("worker metrics not served: ports %d to %d are taken", port, port + PORTS_TRIED)
    return None


def mark_dead(path: Path, pid: int) -> None:
    """Drop a dead worker process's live gauges from the group's sum."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
