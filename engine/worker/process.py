"""One Dramatiq worker process: Tidings' actors served from some queues until SIGTERM.

Dramatiq's own command line runs its worker processes as one group and stops them all
when one of them exits, so a single crashed process would take every worker down with
it. `tidings worker` and `tidings up` instead run each worker process on its own under
`engine.ops.supervisor`, which starts it again when it dies; this module is that process.

Run as `python -m engine.worker.process --queues critical normal --threads 2`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

from engine.logs import configure
from engine.settings import get_settings

log = logging.getLogger("tidings.worker")
READY = "Worker process is ready for action."
WORKER_THREAD_TIMEOUT_MS = 1000
# How often the main thread looks at whether a stop was asked for (s).
STOP_CHECK_S = 0.2


def parser() -> argparse.ArgumentParser:
    args = argparse.ArgumentParser(prog="python -m engine.worker.process", description=__doc__)
    args.add_argument("--queues", nargs="+", required=True)
    args.add_argument("--threads", type=int, default=1)
    args.add_argument(
        "--shutdown-timeout-ms",
        type=int,
        default=10_000,
        help="how long jobs under way get to finish on SIGTERM",
    )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the queues until SIGTERM, then let running jobs finish and stop."""
    args = parser().parse_args(argv)
    settings = get_settings()
    configure(settings.log_level, settings.log_format)
    # The supervisor stops its children with SIGTERM; a terminal's Ctrl-C reaches the
    # supervisor, which then does so. Until the worker runs, both simply end the process.
    # The handler only appends to a list: it must take no lock, because a second SIGTERM
    # (a process group's and the supervisor's arrive together) runs it again inside the
    # first, and a `threading.Event` would deadlock on its own lock there.
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    from dramatiq import Worker

    from engine.worker import actors
    from engine.worker.runtime import BootFailed
    from engine.worker.waking import WakingRedisBroker

    actors.broker.emit_after("process_boot")
    worker = Worker(
        actors.broker,
        queues=set(args.queues),
        worker_threads=args.threads,
        # How often an idle worker thread looks up from its in-process queue (and so how
        # soon it stops); idle consumers wait for work in the broker (`engine.worker.waking`).
        worker_timeout=WORKER_THREAD_TIMEOUT_MS,
    )
    try:
        worker.start()  # builds the process's runtime before any job runs
    except BootFailed as exc:
        log.error("%s", exc)  # the supervisor starts the process again, after a backoff
        actors.broker.close()
        return 1
    log.info(READY, extra={"queues": args.queues, "threads": args.threads})
    while not stopping:
        time.sleep(STOP_CHECK_S)
    log.info("stopping: letting jobs under way finish")
    if isinstance(actors.broker, WakingRedisBroker):
        actors.broker.stop_waiting()
    worker.stop(timeout=args.shutdown_timeout_ms)
    actors.broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
