"""Talking to the processes under test: progress lines, ports, polling, a small JSON client."""

from __future__ import annotations

import http.client
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the JSON result."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], Any], *, timeout: float, every: float = 0.1, what: str) -> Any:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (OSError, http.client.HTTPException):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0-100), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Api:
    """A JSON-over-HTTP client with one keep-alive connection per thread."""

    def __init__(self, base_url: str, key: str | None = None, timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON or text); one reconnect if the kept-alive socket went away."""
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=payload, headers=self.headers)
                response = conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        kind = response.getheader("Content-Type") or ""
        return response.status, json.loads(raw) if "json" in kind else raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer of a call that must succeed (2xx)."""
        status, answer = self.call(method, path, body)
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path} answered {status}: {answer}")
        return answer
