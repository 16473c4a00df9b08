"""The webhook channel's HTTP client beside a well-kept alternative, side by side.

Posts the same webhook-sized JSON body N times to the benchmark's sink (its own process,
`scripts/benchkit/sink.py`) from one event loop with at most C requests in flight, once
per client and round, alternating: aiohttp's `ClientSession` as the channels use it (one
session, keep-alive, at most 100 connections) and httpx's `AsyncClient` over HTTP/1.1
with the same limits. Prints JSON: for each client and round the wall time, requests a
second, the client process's CPU microseconds a request (what a worker pays per
webhook for its client alone), the sink's CPU, and how many connections the requests
came on.

    .venv/bin/python scripts/http_clients.py -n 20000 --concurrency 128 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchkit.broadcast import sink_connections  # noqa: E402
from scripts.benchkit.client import Api, free_port, wait_until  # noqa: E402
from scripts.benchkit.processes import TICK, _stat  # noqa: E402

# A webhook of the benchmark's broadcast: its JSON payload is ~600 bytes.
BODY = json.dumps(
    {
        "type": "notification",
        "delivery_id": 123456,
        "notification_id": 42,
        "recipient": "bench-0123456",
        "category": "promo.flash_sale",
        "channel": "webhook",
        "locale": "en",
        "title": "Flash sale: 20% off gift cards until midnight",
        "body": "Top up today and save: every gift card is 20% off until midnight, "
        "in every store of the platform, while the offer lasts.",
        "action_url": "https://example.com/sale?utm_source=tidings",
        "data": {"offer": "FLASH20", "ends": "2026-12-01T23:59:59+08:00"},
        "created_at": "2026-12-01T03:00:00+00:00",
    }
).encode()
HEADERS = {"Content-Type": "application/json", "webhook-id": "msg_123456"}

Post = Callable[[str], Awaitable[int]]


def _cpu_seconds(pid: int) -> float:
    stat = _stat(pid)
    if stat is None:
        raise RuntimeError(f"the sink (pid {pid}) is gone")
    return stat[2] / TICK


async def _drive(post: Post, url: str, count: int, concurrency: int) -> None:
    left = iter(range(count))

    async def lane() -> None:
        for _ in left:
            status = await post(url)
            if status != 200:
                raise RuntimeError(f"the sink answered {status}")

    await asyncio.gather(*(lane() for _ in range(concurrency)))


async def _aiohttp(url: str, count: int, concurrency: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def post(target: str) -> int:
            async with session.post(target, data=BODY, headers=HEADERS) as response:
                await response.content.read(65536)
                return response.status

        await _drive(post, url, count, concurrency)


async def _httpx(url: str, count: int, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits, http2=False, trust_env=False) as client:

        async def post(target: str) -> int:
            response = await client.post(target, content=BODY, headers=HEADERS)
            return response.status_code

        await _drive(post, url, count, concurrency)


CLIENTS = {"aiohttp": _aiohttp, "httpx": _httpx}


def measure(
    name: str, url: str, sink: int, api: Api, count: int, concurrency: int
) -> dict[str, Any]:
    """One client's run: wall, requests/s, client CPU µs a request, the sink's CPU, and the
    connections the requests came on (keep-alive held if few)."""
    opened = sink_connections(api)
    sink_before, cpu_before, started = _cpu_seconds(sink), time.process_time(), time.monotonic()
    asyncio.run(CLIENTS[name](url, count, concurrency))
    wall, cpu = time.monotonic() - started, time.process_time() - cpu_before
    return {
        "client": name,
        "seconds": round(wall, 2),
        "requests_per_s": round(count / wall),
        "client_cpu_us_per_request": round(cpu / count * 1e6, 1),
        "sink_cpu_seconds": round(_cpu_seconds(sink) - sink_before, 2),
        "connections": sink_connections(api) - opened,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/benchkit/sink.py"), "--port", str(port)]
    )
    try:
        api = Api(f"http://127.0.0.1:{port}")
        wait_until(lambda: sink_connections(api) == 0, timeout=30, what="the sink")
        url = f"http://127.0.0.1:{port}/hook"
        asyncio.run(_aiohttp(url, 500, 16))  # warm both ends up
        runs = [
            measure(name, url, sink.pid, api, args.requests, args.concurrency)
            for _ in range(args.rounds)
            for name in CLIENTS
        ]
    finally:
        sink.terminate()
        sink.wait(10)
    result = {"requests": args.requests, "concurrency": args.concurrency, "runs": runs}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
