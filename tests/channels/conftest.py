"""Real receivers for the channel tests: an SMTP server and an HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from channels.base import Message
from engine.settings import Settings
from tests.support import Mailbox

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _message(**changes: Any) -> Message:
    values: dict[str, Any] = {
        "delivery_id": 42,
        "notification_id": 7,
        "recipient_id": "u-1001",
        "category": "order.delivered",
        "channel": "email",
        "address": "a@example.com",
        "locale": "en",
        "title": "Your card is here",
        "body": "Order 456: your gift card code is ready.",
        "action_url": "https://shop.example/orders/456",
        "data": {"order_id": "456", "card": "原神月卡"},
        "created_at": "2026-11-20T10:00:00+00:00",
    }
    values.update(changes)
    return Message(**values)


@pytest.fixture
def make_message() -> Callable[..., Message]:
    """Build a typical rendered delivery; tests override what they are about."""
    return _message


@pytest.fixture
def free_port() -> int:
    """A TCP port nothing listens on (right now)."""
    return _free_port()


@pytest.fixture
def run() -> Iterator[Run[Any]]:
    """Run a coroutine on this test's own event loop (the same loop for every call)."""
    with asyncio.Runner() as runner:
        yield runner.run


# --- SMTP -----------------------------------------------------------------------------


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int


@pytest.fixture(scope="session")
def smtp_controller() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield SmtpServer(mailbox, controller.port)
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_controller: SmtpServer) -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 with an empty mailbox."""
    smtp_controller.mailbox.reset()
    yield smtp_controller
    smtp_controller.mailbox.reset()


# --- HTTP ------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


class Receiver:
    """An aiohttp server that records every request and answers with queued replies."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.released = asyncio.Event()
        self.url = ""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, shutdown_timeout=1)

    def reply(self, status: int = 200, body: str = "ok", **headers: str) -> None:
        self.replies.append(
            Reply(status, body, {k.replace("_", "-"): v for k, v in headers.items()})
        )

    def hang(self) -> None:
        """Answer the next request only when the test is over."""
        self.replies.append(Reply(hang=True))

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(request.path_qs, dict(request.headers), await request.read()))
        reply = self.replies.popleft() if self.replies else Reply()
        if reply.hang:
            await self.released.wait()
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self.released.set()
        await self.runner.cleanup()


@pytest.fixture
def receiver(run: Run[Any]) -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1, running on the test's event loop."""
    receiver = run(_started())
    yield receiver
    run(receiver.stop())


async def _started() -> Receiver:
    receiver = Receiver()
    await receiver.start()
    return receiver


@pytest.fixture
def secret() -> str:
    return SECRET


@pytest.fixture
def settings() -> Settings:
    """Channel settings with a known webhook secret and no gateway token; the receivers
    listen on this machine, so loopback is allowed."""
    return Settings(
        webhook_secret=SECRET, http_timeout=2.0, gateway_token=None, outbound_allow="127.0.0.0/8"
    )
