"""The channel interface: what a delivery channel receives, and what it must do."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.settings import Settings

# Every channel name Tidings knows, in the order preference pages list them.
CHANNEL_NAMES = ("inapp", "email", "push", "sms", "webhook", "log")
# The recipient field each channel sends to; None when it needs no address.
ADDRESS_FIELDS: Mapping[str, str | None] = {
    "inapp": None,
    "email": "email",
    "push": "push_tokens",
    "sms": "phone",
    "webhook": "webhook_url",
    "log": None,
}


@dataclass(frozen=True)
class Message:
    """One rendered delivery, ready to send: ids, address, and content."""

    delivery_id: int
    notification_id: int
    recipient_id: str
    category: str
    channel: str
    address: str | tuple[str, ...] | None
    locale: str
    title: str
    body: str
    html: str | None = None
    action_url: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    # Signed one-click unsubscribe link (RFC 8058); None for required categories.
    unsubscribe_url: str | None = None
    created_at: str | None = None


@dataclass(frozen=True)
class Sent:
    """What a channel reports back for a message it accepted."""

    delivered: bool = False
    provider_id: str | None = None


class Channel(ABC):
    """A delivery channel: a name and an async `send`.

    `send` raises `channels.errors.PermanentError` for what will never succeed and
    `channels.errors.TransientError` (optionally with `retry_after`) for what may.
    """

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def open(self) -> None:  # noqa: B027 (an optional hook, a no-op by default)
        """Acquire connections or sessions; called once per worker process."""

    async def close(self) -> None:  # noqa: B027 (an optional hook, a no-op by default)
        """Release what `open` acquired."""

    @abstractmethod
    async def send(self, message: Message) -> Sent:
        """Send one message, or raise a delivery error."""
