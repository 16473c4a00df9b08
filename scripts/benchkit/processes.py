"""The processes under test: start and stop them, and watch their memory and CPU in /proc.

Each child runs in its own session, so stopping one stops everything it forked. A
`Sampler` follows process trees (and processes by name, such as the Redis server) and
reports peak memory and the CPU seconds each used; `profiled` records a py-spy profile.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from scripts.benchkit.client import log, wait_until

TICK = os.sysconf("SC_CLK_TCK")
KB_MB = 1 / 1024  # /proc reports kB


class Fleet:
    """Child processes, each in its own session so that stopping one stops its children too."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path) -> None:
        self.logs = logs
        self.env = env
        self.cwd = cwd
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` with the fleet's environment (plus `env`), its output in `name`.log."""
        with open(self.logs / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                list(argv),
                env={**self.env, **(env or {})},
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.running[name] = process
        return process

    def start_dramatiq(
        self, name: str, argv: Sequence[str], processes: int, env: dict[str, str] | None = None
    ) -> None:
        """Start a Dramatiq worker command and wait until each of its processes is ready."""
        self.start(name, argv, env)

        def ready() -> bool:
            self.check(name)
            return self.log_text(name).count("Worker process is ready for action") >= processes

        wait_until(ready, timeout=120, every=0.2, what=f"{name} to start")

    def pid(self, name: str) -> int:
        return self.running[name].pid

    def check(self, name: str) -> None:
        """Raise if a child died early, with the end of its log."""
        process = self.running[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, name: str, lines: int = 25) -> str:
        return "\n".join(self.log_text(name).splitlines()[-lines:])

    def stop(self, name: str, timeout: float = 15) -> None:
        """SIGTERM the process group, then SIGKILL it if it lingers."""
        process = self.running.pop(name, None)
        if process is None:
            return
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        # Dramatiq's forked workers can outlive their parent: clear the whole group.
        _signal_group(process.pid, signal.SIGKILL)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {process.pid}) did not exit after SIGKILL")

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, comm, cpu ticks) of a process, or None if it is gone."""
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), comm, int(fields[11]) + int(fields[12])


def _status_kb(pid: int, names: Iterable[str]) -> dict[str, int]:
    raw = _read(f"/proc/{pid}/status") or ""
    wanted = set(names)
    out = {}
    for line in raw.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            out[key] = int(value.split()[0])
    return out


def _pss_kb(pid: int) -> int:
    raw = _read(f"/proc/{pid}/smaps_rollup") or ""
    for line in raw.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle since boot (all cores)."""
    fields = [int(x) for x in (_read("/proc/stat") or "cpu 0 0 0 0 0").split("\n")[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICK


class Sampler(threading.Thread):
    """Samples memory and CPU of process trees (by root pid) and of processes by name.

    Every `every` seconds it sums VmRSS (and PSS, which does not count pages shared by
    forked workers twice) per role and keeps the peak; at the end it adds up VmHWM
    (each process's own peak) and the CPU seconds each role used while sampling.
    """

    def __init__(
        self,
        roots: dict[str, int],
        by_name: dict[str, str] | None = None,
        *,
        pss: Iterable[str] = (),
        every: float = 0.2,
    ) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.roots = roots
        self.by_name = by_name or {}
        self.pss_roles = set(pss)
        self.every = every
        self._halt = threading.Event()
        self._members: dict[str, set[int]] = {}
        self._first_cpu: dict[int, int] = {}
        self._last_cpu: dict[int, int] = {}
        self._hwm: dict[int, int] = {}
        self.peak_rss: dict[str, int] = {}
        self.peak_pss: dict[str, int] = {}
        self._busy_start = machine_busy_seconds()
        self._driver_start = _own_cpu()
        self._t0 = time.monotonic()
        self.busy = 0.0
        self.wall = 0.0
        self._refresh(initial=True)

    def _refresh(self, initial: bool = False) -> None:
        children: dict[int, list[int]] = {}
        names: dict[str, set[int]] = {role: set() for role in self.by_name}
        wanted = {comm: role for role, comm in self.by_name.items()}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = _stat(int(entry))
            if stat is None:
                continue
            ppid, comm, _ = stat
            children.setdefault(ppid, []).append(int(entry))
            if comm in wanted:
                names[wanted[comm]].add(int(entry))
        members: dict[str, set[int]] = dict(names)
        for role, root in self.roots.items():
            tree, todo = set(), [root]
            while todo:
                pid = todo.pop()
                if pid not in tree:
                    tree.add(pid)
                    todo += children.get(pid, [])
            members[role] = tree
        for pids in members.values():
            for pid in pids:
                if pid not in self._first_cpu:
                    stat = _stat(pid)
                    # Processes born after the start count all their CPU.
                    self._first_cpu[pid] = stat[2] if stat and initial else 0
        self._members = members

    def _sample(self) -> None:
        for role, pids in self._members.items():
            rss = pss = 0
            for pid in pids:
                stat = _stat(pid)
                if stat is None:
                    continue
                self._last_cpu[pid] = stat[2]
                kb = _status_kb(pid, ("VmRSS", "VmHWM"))
                rss += kb.get("VmRSS", 0)
                self._hwm[pid] = max(self._hwm.get(pid, 0), kb.get("VmHWM", 0))
                if role in self.pss_roles:
                    pss += _pss_kb(pid)
            self.peak_rss[role] = max(self.peak_rss.get(role, 0), rss)
            if role in self.pss_roles:
                self.peak_pss[role] = max(self.peak_pss.get(role, 0), pss)

    def run(self) -> None:
        next_refresh = time.monotonic() + 1
        while not self._halt.is_set():
            self._sample()
            if time.monotonic() >= next_refresh:
                self._refresh()
                next_refresh = time.monotonic() + 1
            self._halt.wait(self.every)

    def finish(self) -> dict[str, Any]:
        """Stop sampling; the peaks and CPU use per role."""
        self._halt.set()
        if self.is_alive():
            self.join(5)
        self._sample()
        self.wall = time.monotonic() - self._t0
        self.busy = machine_busy_seconds() - self._busy_start
        out: dict[str, Any] = {}
        for role, pids in self._members.items():
            cpu = sum(self._last_cpu.get(p, 0) - self._first_cpu.get(p, 0) for p in pids)
            entry: dict[str, Any] = {"cpu_seconds": round(cpu / TICK, 2)}
            if role in self.roots:
                entry["peak_rss_mb"] = round(self.peak_rss.get(role, 0) * KB_MB, 1)
                entry["hwm_sum_mb"] = round(sum(self._hwm.get(p, 0) for p in pids) * KB_MB, 1)
                entry["processes"] = len(pids)
            if role in self.pss_roles:
                entry["peak_pss_mb"] = round(self.peak_pss.get(role, 0) * KB_MB, 1)
            out[role] = entry
        out["driver"] = {"cpu_seconds": round(_own_cpu() - self._driver_start, 2)}
        accounted = sum(entry["cpu_seconds"] for entry in out.values())
        available = self.wall * (os.cpu_count() or 1)
        if self.busy - accounted > 0.1 * available:
            log(
                f"warning: {self.busy - accounted:.0f} of {available:.0f} CPU seconds went to "
                "processes outside the benchmark; the figures are noisy, run it again"
            )
        out["machine"] = {
            "cpu_busy_seconds": round(self.busy, 2),
            "cpu_available_seconds": round(available, 2),
            # CPU used by processes outside this benchmark: noise in its figures.
            "cpu_unaccounted_seconds": round(max(0.0, self.busy - accounted), 2),
        }
        return out


@contextlib.contextmanager
def profiled(pid: int, output: Path | None, *, gil: bool = False) -> Iterator[None]:
    """Record a py-spy profile (collapsed stacks) of a process tree while the block runs.

    By default it samples every thread that is not idle; with `gil`, only the thread
    holding the GIL, which is where the Python CPU time goes.
    """
    if output is None:
        yield
        return
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    argv = [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "50"]
    argv += ["--format", "raw", "--output", str(output), *(["--gil"] if gil else [])]
    with open(output.with_suffix(".log"), "ab") as out:
        recorder = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            recorder.wait(60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait(5)
