"""Which channel class serves which name, and the opened channels of one worker process."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from typing import TypeVar

from channels.base import Channel
from channels.email import EmailChannel
from channels.errors import UnknownChannelError
from channels.gateway import PushChannel, SmsChannel
from channels.inapp import InappChannel
from channels.log import LogChannel
from channels.webhook import WebhookChannel
from engine.settings import Settings

logger = logging.getLogger("tidings.channels")

C = TypeVar("C", bound=type[Channel])

# Adding a built-in channel: one new module, one entry here.
CHANNELS: dict[str, type[Channel]] = {
    cls.name: cls
    for cls in (InappChannel, EmailChannel, PushChannel, SmsChannel, WebhookChannel, LogChannel)
}


def register(cls: C, *, replace: bool = False) -> C:
    """Make a channel class available under its `name`; usable as a class decorator.

    A platform adds its own channel this way, or swaps a built-in one with
    `replace=True` (say, its own `sms`).
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} needs a `name` to be registered")
    current = CHANNELS.get(name)
    if current is not None and current is not cls and not replace:
        raise ValueError(f"channel {name!r} is already registered as {current.__qualname__}")
    CHANNELS[name] = cls
    return cls


class Channels:
    """One instance of every channel (or of the named ones), opened together.

    A worker builds this once, `open`s it on start (on the event loop it will send
    from) and `close`s it on shutdown; deliveries look channels up with `get`.
    """

    def __init__(self, settings: Settings, names: Iterable[str] | None = None) -> None:
        self.settings = settings
        wanted = list(CHANNELS) if names is None else list(names)
        self._channels: dict[str, Channel] = {name: lookup(name)(settings) for name in wanted}
        self._opened: list[Channel] = []

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._channels)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def get(self, name: str) -> Channel:
        """The channel serving `name`; `UnknownChannelError` (a `KeyError`) if none does."""
        try:
            return self._channels[name]
        except KeyError:
            raise unknown(name, self._channels) from None

    async def open(self) -> None:
        """Open every channel; if one fails, close the ones already opened and re-raise."""
        for channel in self._channels.values():
            if channel in self._opened:
                continue
            try:
                await channel.open()
            except BaseException:
                await self.close()
                raise
            self._opened.append(channel)

    async def close(self) -> None:
        """Close every opened channel, in reverse order; a failing close is logged, not raised."""
        while self._opened:
            channel = self._opened.pop()
            try:
                await channel.close()
            except Exception:
                logger.exception("closing the %s channel failed", channel.name)

    async def __aenter__(self) -> Channels:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def lookup(name: str) -> type[Channel]:
    """The channel class registered under `name`."""
    try:
        return CHANNELS[name]
    except KeyError:
        raise unknown(name, CHANNELS) from None


def unknown(name: str, known: Iterable[str]) -> UnknownChannelError:
    return UnknownChannelError(
        f"no channel named {name!r}; known channels: {', '.join(sorted(known)) or 'none'}"
    )
