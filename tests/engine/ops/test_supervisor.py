"""One dead process is not an outage: a worker process killed under `tidings up` or
`tidings worker` is started again while the API, the scheduler and the other workers go
on, and `readyz` and `tidings status` say which one restarted, how it ended and when."""

from __future__ import annotations

import os
import signal
import sys
import time

import httpx

from engine.ops.supervisor import Spec, Supervisor
from engine.timeutil import now
from tests.engine.broadcasts import ORDER, children, health_watched, processes_view, workers
from tests.engine.conftest import Processes, recipient, send, settled, status_report, wait_for
from tests.support import free_port


def test_a_worker_killed_under_tidings_up_is_restarted_while_the_api_keeps_serving(
    processes: Processes, api_keys: dict[str, str]
) -> None:
    port = free_port()
    up = processes.start("up", "up", "--port", str(port), "--processes", "1")
    headers = {"Authorization": f"Bearer {api_keys['admin']}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
        # critical worker, one general worker, scheduler and API, all running
        view = wait_for(
            lambda: (v := processes_view(client)) and v["running"] == 4 and v, timeout=60
        )
        assert view["restarts"] == 0 and view["last_restart"] is None
        client.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
        recipient(client, "u-1")
        others = {
            pid for pid, cmd in children(up.pid).items() if "engine.worker.process" not in cmd
        }
        general = workers(up.pid, "normal")
        (critical,) = wait_for(lambda: workers(up.pid, "critical"), timeout=30)

        with health_watched(client) as failures:  # the API answers all along
            killed_at = now()
            os.kill(critical, signal.SIGKILL)
            # Sent while the only critical worker is dead: it is delivered by the new one.
            nid = send(client, category="order.delivered", to=["u-1"])
            done = wait_for(lambda: settled(client, nid), timeout=30)
            assert done["counts"]["delivered"] == 1
        assert failures == []

        restarted = workers(up.pid, "critical")
        assert len(restarted) == 1 and critical not in restarted
        assert workers(up.pid, "normal") == general  # the others were left alone
        assert {
            p for p, c in children(up.pid).items() if "engine.worker.process" not in c
        } == others

        # The supervisor writes its view every 2 s: wait for one written after the restart.
        view = wait_for(
            lambda: (v := processes_view(client)) and v["running"] == 4 and v["restarts"] and v
        )
        assert view["restarts"] == 1
        last = view["last_restart"]
        assert last["process"] == "worker-critical-0" and last["how"] == "killed by SIGKILL"
        exited_at = time.mktime(time.strptime(last["exited_at"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert abs(exited_at - time.mktime(killed_at.timetuple())) < 5
        assert last["restarted_at"] >= last["exited_at"]

    reported = status_report(processes.env["up"])["processes"]
    assert reported["last_restart"] == last
    (supervisor,) = reported["detail"]
    assert supervisor["role"] == "up" and supervisor["pid"] == up.pid
    by_name = {p["name"]: p for p in supervisor["processes"]}
    assert by_name["worker-critical-0"]["last_exit"]["pid"] == critical
    assert by_name["worker-critical-0"]["pid"] in restarted
    assert by_name["api"]["restarts"] == by_name["scheduler"]["restarts"] == 0


def test_tidings_worker_restarts_the_process_that_died_and_only_that_one(
    processes: Processes,
) -> None:
    group = processes.start("worker", "worker", "--processes", "2", "--threads", "1")
    first = wait_for(lambda: len(w := workers(group.pid)) == 2 and w, timeout=60)
    victim, survivor = sorted(first)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: len(w := workers(group.pid)) == 2 and victim not in w and w)
    assert survivor in after
    assert group.poll() is None
    assert "killed by SIGKILL" in processes.log("worker")


def _maps(pid: int) -> str:
    """The files mapped into a process's memory, as /proc lists them."""
    with open(f"/proc/{pid}/maps") as maps:
        return maps.read()


def test_the_worker_supervisor_beats_under_the_installations_keys_without_loading_sql(
    processes: Processes,
) -> None:
    """The supervisor of `tidings worker` names its heartbeat key as every other process
    of the installation does (`tidings status` finds it), yet holds no SQL library in
    memory: it never touches SQL, and SQLAlchemy would stay resident in it for nothing."""
    group = processes.start("worker", "worker", "--processes", "1", "--threads", "1")
    (worker,) = wait_for(lambda: len(w := workers(group.pid)) == 1 and w, timeout=60)

    def reported() -> list[dict[str, object]] | None:
        detail = status_report(processes.env["worker"])["processes"]["detail"]
        return [s for s in detail if s["pid"] == group.pid] or None

    (supervisor,) = wait_for(reported, timeout=30)
    assert supervisor["role"] == "worker"
    # The same check in a worker process, which does load it, shows the check can see it.
    assert "sqlalchemy" in wait_for(lambda: "sqlalchemy" in _maps(worker) and _maps(worker))
    assert "sqlalchemy" not in _maps(group.pid)


def test_a_process_that_keeps_dying_is_restarted_with_a_growing_backoff() -> None:
    crash = Spec("crash", [sys.executable, "-c", "import sys; sys.exit(3)"])
    supervisor = Supervisor([crash], role="test")
    supervisor.start()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            supervisor.poll()
            time.sleep(0.05)
    finally:
        supervisor.wait()
    (child,) = supervisor.children
    # Waits of 0.5, 1 and 2 s: at most three restarts in three seconds, not dozens.
    assert 2 <= child.restarts <= 3
    assert child.last_exit is not None and child.last_exit["how"] == "exited with 3"
