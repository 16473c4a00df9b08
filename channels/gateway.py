"""SMS and push through a configurable HTTP gateway: the platform's own sender, or a vendor's."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from channels.base import Message, Sent
from channels.errors import PermanentError
from channels.http import HttpChannel, dump


def idempotency_key(delivery_id: int) -> str:
    """The `Idempotency-Key` of a delivery: the same on every re-send."""
    return f"delivery-{delivery_id}"


class GatewayChannel(HttpChannel):
    """A channel that hands messages to an HTTP gateway as JSON.

    Subclasses say where the gateway is and what it receives. Requests carry
    `Authorization: Bearer <gateway_token>` when a token is set, and an
    `Idempotency-Key` so a gateway can drop a re-send it already accepted.
    A 2xx means the gateway accepted the message, not that it reached the device.
    """

    @property
    @abstractmethod
    def url(self) -> str | None:
        """The gateway URL from settings; None when the operator has not configured one."""

    @abstractmethod
    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON document the gateway receives for one delivery."""

    async def send(self, message: Message) -> Sent:
        url = self.url
        if not url:
            raise PermanentError(f"{self.name} gateway is not configured")
        headers = {"Idempotency-Key": idempotency_key(message.delivery_id)}
        if self.settings.gateway_token:
            headers["Authorization"] = f"Bearer {self.settings.gateway_token}"
        await self.post(url, dump(self.payload(message), self.name), headers)
        return Sent(delivered=False)


class SmsChannel(GatewayChannel):
    """Text messages to the recipient's `phone`, through `sms_gateway_url`."""

    name = "sms"

    @property
    def url(self) -> str | None:
        return self.settings.sms_gateway_url

    def payload(self, message: Message) -> dict[str, Any]:
        phone = message.address
        if not isinstance(phone, str) or not phone:
            raise PermanentError("sms: the recipient has no phone number")
        return {
            "to": phone,
            "body": message.body,
            "delivery_id": message.delivery_id,
            "category": message.category,
        }


class PushChannel(GatewayChannel):
    """Push notifications to every one of the recipient's `push_tokens`, through
    `push_gateway_url`."""

    name = "push"

    @property
    def url(self) -> str | None:
        return self.settings.push_gateway_url

    def payload(self, message: Message) -> dict[str, Any]:
        address = message.address
        tokens = [address] if isinstance(address, str) else list(address or ())
        tokens = [token for token in tokens if token]
        if not tokens:
            raise PermanentError("push: the recipient has no push tokens")
        return {
            "tokens": tokens,
            "title": message.title,
            "body": message.body,
            "action_url": message.action_url,
            "data": dict(message.data),
            "delivery_id": message.delivery_id,
        }
