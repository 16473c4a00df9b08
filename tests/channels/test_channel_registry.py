"""The registry, the opened channels of a worker, and the two local channels."""

from __future__ import annotations

import logging

import pytest

from channels import (
    CHANNEL_NAMES,
    CHANNELS,
    Channel,
    Channels,
    InappChannel,
    LogChannel,
    Message,
    PermanentError,
    Sent,
    UnknownChannelError,
    WebhookChannel,
    register,
)


class Recording(Channel):
    """A platform's own channel that remembers its lifecycle."""

    name = "recording"
    events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    async def close(self) -> None:
        self.events.append("close")

    async def send(self, message: Message) -> Sent:
        self.events.append(f"send {message.delivery_id}")
        return Sent(delivered=True, provider_id="rec-1")


@pytest.fixture
def registered():
    """Register `Recording` for one test, restoring the registry afterwards."""
    before = dict(CHANNELS)
    Recording.events = []
    register(Recording)
    yield Recording
    CHANNELS.clear()
    CHANNELS.update(before)


def test_every_known_channel_name_has_a_class():
    assert set(CHANNELS) == set(CHANNEL_NAMES)
    assert all(cls.name == name for name, cls in CHANNELS.items())


def test_channels_opens_sends_and_closes_every_channel(run, settings, registered, make_message):
    channels = Channels(settings)

    async def scenario():
        async with channels:
            return await channels.get("recording").send(make_message(delivery_id=9))

    sent = run(scenario())

    assert sent == Sent(delivered=True, provider_id="rec-1")
    assert registered.events == ["open", "send 9", "close"]
    assert set(channels.names) == set(CHANNEL_NAMES) | {"recording"}
    assert isinstance(channels.get("webhook"), WebhookChannel)


def test_a_channel_that_fails_to_open_closes_the_others(run, settings, registered):
    class Broken(Channel):
        name = "broken"

        async def open(self) -> None:
            raise RuntimeError("no gateway")

        async def send(self, message: Message) -> Sent:
            raise AssertionError("never opened")

    register(Broken)
    channels = Channels(settings, ["recording", "broken"])

    with pytest.raises(RuntimeError, match="no gateway"):
        run(channels.open())
    assert registered.events == ["open", "close"]


def test_an_unknown_channel_name_is_a_clear_error(settings):
    channels = Channels(settings, ["inapp", "email"])

    with pytest.raises(
        UnknownChannelError, match="no channel named 'fax'; known channels: email, inapp"
    ):
        channels.get("fax")
    with pytest.raises(KeyError):
        channels.get("fax")
    with pytest.raises(PermanentError):
        channels.get("fax")
    with pytest.raises(UnknownChannelError, match="'pigeon'"):
        Channels(settings, ["pigeon"])


def test_a_name_cannot_be_taken_twice_without_replace(registered):
    class Other(Recording):
        name = "recording"

    with pytest.raises(ValueError, match="already registered"):
        register(Other)
    assert register(Other, replace=True) is Other
    assert CHANNELS["recording"] is Other


def test_a_channel_without_a_name_cannot_be_registered():
    class Nameless(Channel):
        async def send(self, message: Message) -> Sent:
            return Sent()

    with pytest.raises(ValueError, match="needs a `name`"):
        register(Nameless)


def test_log_channel_logs_ids_and_title_but_not_the_address(run, settings, make_message, caplog):
    caplog.set_level(logging.INFO, logger="tidings.channels.log")

    sent = run(LogChannel(settings).send(make_message(address="a@example.com")))

    assert sent.delivered is True
    [record] = caplog.records
    assert record.levelno == logging.INFO
    text = record.getMessage()
    for part in ("42", "u-1001", "order.delivered", "Your card is here"):
        assert part in text
    assert "a@example.com" not in text


def test_inapp_is_delivered_once_recorded(run, settings, make_message):
    assert run(InappChannel(settings).send(make_message(address=None))).delivered is True
