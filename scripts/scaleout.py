"""Scale-out: a broadcast's work spread over worker hosts sharing one PostgreSQL and one
Redis, checked exactly-once, with what each chunk costs. Prints one JSON document.

Each worker host is a network namespace of this machine with its own `tidings worker`
(`scripts/benchkit/hosts.py`); the API and the scheduler stay in the root namespace. It
needs root (`ip netns`), `unshare` and `socat`. It writes N inbox recipients to a fresh
PostgreSQL database (dropped afterwards), sends one notification to all of them through
the API, and reports per host the chunks it planned, the deliveries it wrote and its CPU;
then the checks (every recipient exactly one delivery) and the per-chunk costs: worker
CPU, PostgreSQL backend CPU, rows, bytes, WAL and commits, Redis commands and CPU.

    python scripts/scaleout.py                          # 100,000 recipients, 2 hosts
    python scripts/scaleout.py -n 20000 --processes 2   # 2 worker processes per host

Redis is 127.0.0.1:6379 unless BENCH_REDIS_PORT names another port: give it a server of
its own, or its command counts include everyone else's. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench import revision
from scripts.benchkit.hosts import unavailable
from scripts.benchkit.scaleout import Options, scaleout
from scripts.benchkit.stores import (
    BROKER_DB,
    COUNTERS_DB,
    POSTGRES_ADMIN,
    REDIS_PORT,
    exclusive,
    flushed_redis,
    fresh_postgres,
    redis_server,
)


def _terminate(signum: int, _frame: Any) -> None:
    # A second signal must not cut the clean-up short: it would leave hosts behind.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--recipients", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=2, help="worker hosts (namespaces)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes per host")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to settle")
    parser.add_argument("--postgres-admin-url", default=POSTGRES_ADMIN)
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    result: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "revision": revision(),
        "redis_port": REDIS_PORT,
    }
    if reason := unavailable():
        result["error"] = reason
        print(json.dumps(result, indent=2))
        return 2
    code = 0
    logs = Path(tempfile.mkdtemp(prefix="tidings-scaleout-"))
    try:
        with ExitStack() as stack:
            stack.enter_context(exclusive())
            stack.enter_context(redis_server())
            stack.enter_context(flushed_redis())
            url = stack.enter_context(fresh_postgres(args.postgres_admin_url))
            options = Options(
                database_url=url,
                redis_port=REDIS_PORT,
                broker_db=BROKER_DB,
                counters_db=COUNTERS_DB,
                logs=logs,
                recipients=args.recipients,
                hosts=args.hosts,
                processes=args.processes,
                threads=args.threads,
                timeout=args.timeout,
            )
            result.update(scaleout(options))
    except KeyboardInterrupt:
        result["error"] = "interrupted"
        code = 130
    except Exception as exc:
        traceback.print_exc()
        result["error"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        if args.keep_logs:
            print(f"logs kept in {logs}", file=sys.stderr)
        else:
            shutil.rmtree(logs, ignore_errors=True)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return code


if __name__ == "__main__":
    sys.exit(main())
