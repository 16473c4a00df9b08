"""The webhook receiver `scripts/bench.py` sends to: answers 200 to every POST and counts them,
and the TCP connections they came on (so a run shows whether keep-alive held).

It runs as its own process so that it does not share a GIL with the benchmark driver.

    python scripts/benchkit/sink.py --port 8765
    curl http://127.0.0.1:8765/count        # {"count": 1234, "connections": 64}
"""

from __future__ import annotations

import argparse
import sys

from aiohttp import web

RECEIVED = web.AppKey("received", list)
# The client ends (address, port) POSTs arrived from: one per TCP connection.
PEERS = web.AppKey("peers", set)


async def receive(request: web.Request) -> web.Response:
    """Any POST: read the body (as a real receiver would), count it, answer 200."""
    await request.read()
    request.app[RECEIVED][0] += 1
    if request.transport is not None:
        request.app[PEERS].add(request.transport.get_extra_info("peername"))
    return web.Response(text="ok")


async def count(request: web.Request) -> web.Response:
    """How many POSTs arrived since the start, over how many connections."""
    return web.json_response(
        {"count": request.app[RECEIVED][0], "connections": len(request.app[PEERS])}
    )


def create_app() -> web.Application:
    app = web.Application()
    app[RECEIVED] = [0]
    app[PEERS] = set()
    app.router.add_get("/count", count)
    app.router.add_post("/{tail:.*}", receive)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
