"""Idle: what `tidings up` costs with nothing to do, and how soon it still answers.

It runs `tidings up` with its defaults, lets it settle, then measures the CPU seconds its
whole process tree (supervisor, API, scheduler, worker processes) used over a window in
which nothing is sent, as a share of one core; then it sends critical notifications one
at a time, each to idle workers, and measures API accept to `delivered`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database
from scripts.benchkit.broadcast import ORDER, ORDER_CATEGORY
from scripts.benchkit.client import Api, log, wait_until
from scripts.benchkit.latency import Prober, latency
from scripts.benchkit.processes import TICK, Fleet, Sampler

READY = "Worker process is ready for action"


def per_process(root: int) -> dict[str, int]:
    """CPU ticks so far of each process in `root`'s tree, by a readable name."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out: dict[str, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        words = [a.decode() for a in argv if a and not a.startswith(b"/")]
        name = " ".join(w for w in words if w not in ("-m", "engine.ops.cli"))[:60] or str(pid)
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{name} [{pid}]"] = int(fields[11]) + int(fields[12])
    return out


def idle(
    args: argparse.Namespace, settings: Settings, db: Database, fleet: Fleet, probe: str
) -> dict[str, Any]:
    """Start `tidings up`, measure its idle CPU over `args.idle` seconds, then the accept to
    delivered latency of `args.idle_probes` critical notifications sent `args.idle_every`
    seconds apart (each finds the workers idle again)."""
    port = int(settings.public_url.rsplit(":", 1)[1])
    fleet.start("up", [sys.executable, "-m", "engine.ops.cli", "up", "--port", str(port)])
    processes = 1 + settings.worker_processes

    def ready() -> bool:
        fleet.check("up")
        return fleet.log_text("up").count(READY) >= processes

    wait_until(ready, timeout=120, every=0.2, what="tidings up to start")
    wait_until(
        lambda: Api(settings.public_url).call("GET", "/healthz")[0] == 200,
        timeout=60,
        what="the API",
    )
    with db.session() as session:
        _, key = keys.create(session, name="bench-idle", scopes=["admin"])
    api = Api(settings.public_url, key)
    api.ok("PUT", f"/v1/categories/{ORDER}", ORDER_CATEGORY)
    log(f"tidings up is ready; settling {args.idle_settle:.0f}s, then idle for {args.idle:.0f}s")
    time.sleep(args.idle_settle)

    sampler = Sampler({"up": fleet.pid("up")}, every=1.0)
    before = per_process(fleet.pid("up"))
    sampler.start()
    time.sleep(args.idle)
    usage = sampler.finish()
    after = per_process(fleet.pid("up"))
    seconds = usage["up"]["cpu_seconds"]
    out: dict[str, Any] = {
        "window_s": round(sampler.wall, 1),
        "cpu_seconds": seconds,
        "percent_of_one_core": round(100 * seconds / sampler.wall, 2),
        "processes": usage["up"]["processes"],
        "peak_rss_mb": usage["up"]["peak_rss_mb"],
        "machine": usage["machine"],
        "percent_by_process": {
            name: round(100 * (ticks - before.get(name, 0)) / TICK / sampler.wall, 2)
            for name, ticks in sorted(after.items())
        },
    }
    log(f"idle: {out['percent_of_one_core']}% of one core over {out['window_s']}s")

    log(f"sending {args.idle_probes} critical notifications, one every {args.idle_every}s")
    prober = Prober(api, ORDER, probe, every=args.idle_every)
    prober.start()
    time.sleep(args.idle_probes * args.idle_every)
    prober.finish()
    out["critical"] = latency(db, prober)
    fleet.stop("up")
    return out
