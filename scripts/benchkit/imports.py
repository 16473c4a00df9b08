"""Importing recipients through the public API: one file to `POST /v1/recipients/import`
(NDJSON and CSV), beside the same recipients in calls of 1,000 to `POST
/v1/recipients/bulk`, and `tidings import recipients FILE`; recipients per second each."""

from __future__ import annotations

import csv
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from engine.catalog import keys
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Recipient
from scripts.benchkit.client import Api, log, wait_until
from scripts.benchkit.processes import Fleet, Sampler

ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Tokyo")
LOCALES = ("zh-CN", "en", "ja", "de")


def person(prefix: str, i: int) -> dict[str, Any]:
    return {
        "id": f"{prefix}-{i:08d}",
        "email": f"user{i}@example.com",
        "timezone": ZONES[i % len(ZONES)],
        "locale": LOCALES[i % len(LOCALES)],
        "annual_spend": float(i % 5000),
        "tags": ["game.mobile"] if i % 3 else ["game.mobile", "vip"],
    }


def write_files(folder: Path, count: int) -> dict[str, Path]:
    """The same `count` recipients as NDJSON, and others as CSV."""
    ndjson, table = folder / "people.ndjson", folder / "people.csv"
    with ndjson.open("w") as out:
        for i in range(count):
            out.write(json.dumps(person("j", i)) + "\n")
    with table.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "email", "timezone", "locale", "annual_spend", "tags"])
        for i in range(count):
            row = person("c", i)
            writer.writerow([*list(row.values())[:5], "|".join(row["tags"])])
    return {"ndjson": ndjson, "csv": table}


def post_file(url: str, key: str, path: Path, media: str) -> tuple[int, Any, float]:
    """POST a file as the body, streamed from disk; (status, answer, seconds)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=3600)
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": media,
        "Content-Length": str(path.stat().st_size),
    }
    started = time.monotonic()
    with path.open("rb") as body:
        conn.request("POST", "/v1/recipients/import", body=body, headers=headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
    return response.status, answer, time.monotonic() - started


def count(db: Database, prefix: str) -> int:
    with db.session() as session:
        return int(
            session.scalar(
                select(func.count()).where(Recipient.id.startswith(f"{prefix}-"))  # type: ignore[attr-defined]
            )
            or 0
        )


def imports(
    args: Any, settings: Settings, db: Database, fleet: Fleet, folder: Path
) -> dict[str, Any]:
    """Time each way of loading `args.import_recipients` recipients."""
    n = args.import_recipients
    log(f"writing {n:,} recipients as NDJSON and CSV files")
    files = write_files(folder, n)
    port = settings.public_url.rsplit(":", 1)[1]
    me = [sys.executable, "-m", "engine.ops.cli"]
    fleet.start("api", [*me, "api", "--host", "127.0.0.1", "--port", port])
    wait_until(
        lambda: Api(settings.public_url).call("GET", "/healthz")[0] == 200,
        timeout=60,
        what="the API",
    )
    with db.session() as session:
        _, key = keys.create(session, name="bench-import", scopes=["admin"])
    out: dict[str, Any] = {"recipients": n}
    for kind, media in (("ndjson", "application/x-ndjson"), ("csv", "text/csv")):
        log(f"POST /v1/recipients/import ({kind}, {files[kind].stat().st_size:,} bytes)")
        sampler = Sampler({"api": fleet.pid("api")}, every=1.0)
        sampler.start()
        status, answer, seconds = post_file(settings.public_url, key, files[kind], media)
        usage = sampler.finish()
        cpu = usage["api"]["cpu_seconds"]
        landed = count(db, "j" if kind == "ndjson" else "c")
        out[f"import_{kind}"] = {
            "status": status,
            "answer": answer if status != 200 else None,
            "seconds": round(seconds, 2),
            "recipients_per_s": round(n / seconds),
            # The API's own CPU: what the import costs, whatever else shares the machine.
            "api_cpu_seconds": cpu,
            "recipients_per_api_cpu_s": round(n / cpu) if cpu else None,
            "machine_unaccounted_cpu_s": usage["machine"]["cpu_unaccounted_seconds"],
            "landed": landed,
            "bytes": files[kind].stat().st_size,
        }
        log(f"{kind}: {status} in {seconds:.1f}s, {landed:,} landed")
    # The same file again through the command line, against the same database.
    started = time.monotonic()
    done = subprocess.run(
        [*me, "import", "recipients", str(files["ndjson"])],
        env=fleet.env,
        cwd=fleet.cwd,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    out["cli_ndjson_again"] = {
        "exit": done.returncode,
        "seconds": round(seconds, 2),
        "recipients_per_s": round(n / seconds),
    }
    # The old way: JSON calls of at most 1,000 to /v1/recipients/bulk, one after another.
    calls = min(n, args.import_bulk_baseline)
    api = Api(settings.public_url, key)
    started = time.monotonic()
    for start in range(0, calls, 1000):
        batch = [person("b", i) for i in range(start, min(calls, start + 1000))]
        api.ok("POST", "/v1/recipients/bulk", {"recipients": batch})
    seconds = time.monotonic() - started
    out["bulk_calls_of_1000"] = {
        "recipients": calls,
        "seconds": round(seconds, 2),
        "recipients_per_s": round(calls / seconds),
    }
    fleet.stop("api")
    return out
