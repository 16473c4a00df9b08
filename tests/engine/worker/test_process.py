"""A worker process stops cleanly however its SIGTERMs arrive."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from tests.engine.conftest import Processes, wait_for


def test_a_burst_of_sigterms_stops_the_worker_cleanly(processes: Processes) -> None:
    """`tidings worker` under a process-group kill gets two SIGTERMs at once (the group's
    and the supervisor's). A handler that took a lock deadlocked when the second ran
    inside the first: the worker hung until SIGKILL and never finished its jobs."""
    worker = processes.start("worker", "worker", "--processes", "1")
    wait_for(lambda: "Worker process is ready" in processes.log("worker"), timeout=60)
    children = subprocess.run(
        ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    child = int(children[0])
    # Signals sent at once merge into one; spaced by a few microseconds, some land while
    # the handler of the one before is still running.
    with contextlib.suppress(ProcessLookupError):  # it may be gone before the last one
        for _ in range(3000):
            os.kill(child, signal.SIGTERM)
            time.sleep(0.00002)
        os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(20) == 0
    log = processes.log("worker")
    assert "Worker has been shut down." in log, log
