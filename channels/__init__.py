"""Delivery channels: one module per channel, a registry, and the errors they raise."""

from __future__ import annotations

from channels.base import ADDRESS_FIELDS, CHANNEL_NAMES, Channel, Message, Sent
from channels.email import EmailChannel
from channels.errors import DeliveryError, PermanentError, TransientError, UnknownChannelError
from channels.gateway import GatewayChannel, PushChannel, SmsChannel
from channels.http import HttpChannel
from channels.inapp import InappChannel
from channels.log import LogChannel
from channels.registry import CHANNELS, Channels, lookup, register
from channels.webhook import WebhookChannel

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
