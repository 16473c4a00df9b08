"""Delivery channels: one module per channel, a registry, and the errors they raise.

The names below are imported when first asked for, so a process that needs one module
(the settings' outbound policy, `channels.outbound`) does not load every channel's client
(aiohttp, aiosmtplib)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels.base import ADDRESS_FIELDS, CHANNEL_NAMES, Channel, Message, Sent
    from channels.email import EmailChannel
    from channels.errors import (
        DeliveryError,
        PermanentError,
        TransientError,
        UnknownChannelError,
    )
    from channels.gateway import GatewayChannel, PushChannel, SmsChannel
    from channels.http import HttpChannel
    from channels.inapp import InappChannel
    from channels.log import LogChannel
    from channels.registry import CHANNELS, Channels, lookup, register
    from channels.webhook import WebhookChannel

# Where each exported name lives.
_HOMES = {
    "ADDRESS_FIELDS": "channels.base",
    "CHANNEL_NAMES": "channels.base",
    "Channel": "channels.base",
    "Message": "channels.base",
    "Sent": "channels.base",
    "EmailChannel": "channels.email",
    "DeliveryError": "channels.errors",
    "PermanentError": "channels.errors",
    "TransientError": "channels.errors",
    "UnknownChannelError": "channels.errors",
    "GatewayChannel": "channels.gateway",
    "PushChannel": "channels.gateway",
    "SmsChannel": "channels.gateway",
    "HttpChannel": "channels.http",
    "InappChannel": "channels.inapp",
    "LogChannel": "channels.log",
    "CHANNELS": "channels.registry",
    "Channels": "channels.registry",
    "lookup": "channels.registry",
    "register": "channels.registry",
    "WebhookChannel": "channels.webhook",
}

__all__ = [
    "ADDRESS_FIELDS",
    "CHANNELS",
    "CHANNEL_NAMES",
    "Channel",
    "Channels",
    "DeliveryError",
    "EmailChannel",
    "GatewayChannel",
    "HttpChannel",
    "InappChannel",
    "LogChannel",
    "Message",
    "PermanentError",
    "PushChannel",
    "Sent",
    "SmsChannel",
    "TransientError",
    "UnknownChannelError",
    "WebhookChannel",
    "lookup",
    "register",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'channels' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
