"""Real peers the tests talk to: an SMTP mailbox (aiosmtpd) and an HTTP sink."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import socket
import threading
import time
from collections import defaultdict
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """The API served over real HTTP in a background thread."""

    def __init__(self, app: web.Application) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self._app)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> Server:
        self._thread.start()
        assert self._ready.wait(10), "the API did not start"
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and refuses chosen recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        # The DATA exactly as received, before any parsing.
        self.raw: list[bytes] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        # address -> the reply its RCPT TO gets instead of 250
        self.reject: dict[str, str] = {}

    def reset(self) -> None:
        self.messages.clear()
        self.raw.clear()
        self.envelopes.clear()
        self.reject.clear()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.raw.append(bytes(envelope.original_content))
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append(mail)
        return "250 Message accepted for delivery"


def raw_header_block(raw: bytes) -> bytes:
    """The header section of a message as received, CRLF line ends kept."""
    head, sep, _ = raw.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    return head + b"\r\n"


def raw_headers(raw: bytes) -> list[tuple[str, str]]:
    """(name, unfolded value) for each top-level header, read by hand from the octets:
    RFC 5322 unfolding only removes a CRLF that precedes whitespace."""
    text = raw_header_block(raw).decode("ascii")
    unfolded = re.sub(r"\r\n(?=[ \t])", "", text)
    out = []
    for line in unfolded.split("\r\n")[:-1]:
        name, colon, value = line.partition(":")
        assert colon and re.fullmatch(r"[\x21-\x39\x3b-\x7e]+", name), line
        out.append((name, value.strip()))
    return out


ENCODED_WORD = re.compile(r"=\?([^?]+)\?([bBqQ])\?([^?]*)\?=")


def decode_encoded_words(value: str) -> str:
    """An RFC 2047 header text decoded by hand: whitespace between two encoded-words
    is dropped, each word is at most 75 characters and decodes on its own."""
    parts: list[str] = []
    last_was_word = False
    for token in re.split(r"(\s+)", value):
        match = ENCODED_WORD.fullmatch(token)
        if match:
            assert len(token) <= 75, f"encoded-word longer than 75: {token}"
            charset, kind, text = match.groups()
            if kind in "bB":
                data = base64.b64decode(text)
            else:
                data = binascii.a2b_qp(text.replace("_", " "))
            if last_was_word and parts and parts[-1].isspace():
                parts.pop()
            parts.append(data.decode(charset))
            last_was_word = True
        elif token:
            assert "=?" not in token, f"a malformed encoded-word: {token}"
            parts.append(token)
            last_was_word = last_was_word and token.isspace()
    return "".join(parts)


class Sink:
    """An HTTP receiver for webhooks and gateways that records every request.

    Paths starting with /fail answer 500; /gone answers 410. `delay` seconds pass before
    each answer (a slow receiver).
    """

    def __init__(self) -> None:
        self.delay = 0.0
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.raw: list[bytes] = []  # each request's body as it arrived, for signature checks
        self.arrivals: list[float] = []
        self.answered = 0  # requests answered so far (after their delay)
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            self.requests.append((request.path, dict(request.headers), json.loads(body or b"null")))
            self.raw.append(body)
            self.arrivals.append(time.time())
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.answered += 1
        if request.path.startswith("/fail"):
            return web.Response(status=500, text="upstream is down")
        if request.path.startswith("/gone"):
            return web.Response(status=410, text="endpoint removed")
        return web.Response(text="ok")

    def seconds(self) -> list[float]:
        """When each request arrived (epoch seconds)."""
        with self.lock:
            return list(self.arrivals)

    def by_path(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = defaultdict(list)
        with self.lock:
            for path, headers, _ in self.requests:
                out[path].append(headers)
        return out
