"""The webhook channel: a JSON POST to the recipient's URL, signed per Standard Webhooks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from channels.base import Message, Sent
from channels.errors import PermanentError
from channels.http import HttpChannel, dump
from engine.settings import Settings


def webhook_id(delivery_id: int) -> str:
    """The `webhook-id` of a delivery: the same on every re-send, so receivers can dedupe."""
    return f"msg_{delivery_id}"


def payload(message: Message) -> dict[str, Any]:
    """The JSON document a webhook receiver gets for one delivery."""
    return {
        "type": "notification",
        "delivery_id": message.delivery_id,
        "notification_id": message.notification_id,
        "recipient": message.recipient_id,
        "category": message.category,
        "channel": message.channel,
        "locale": message.locale,
        "title": message.title,
        "body": message.body,
        "action_url": message.action_url,
        "data": dict(message.data),
        "created_at": message.created_at,
    }


class WebhookChannel(HttpChannel):
    """Signed HTTP POST to `webhook_url`: how a platform plugs in its own gateway.

    Receivers verify `webhook-signature` with the installation's secret (`tidings
    webhook-secret` prints it; any Standard Webhooks library verifies) and dedupe on
    `webhook-id`, which stays the same when Tidings re-sends a delivery after a failure.
    """

    name = "webhook"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if not settings.webhook_secret:
            # Workers bind the installation's generated secret (engine.store.installation.bind).
            raise RuntimeError(
                "no webhook secret: run `tidings migrate` or set TIDINGS_WEBHOOK_SECRET"
            )
        # Built once, so a malformed secret fails when the worker starts, not per send.
        self.signer = Webhook(settings.webhook_secret)

    def headers(self, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
        """The Standard Webhooks headers for one attempt: id, timestamp, signature."""
        timestamp = now or datetime.now(UTC)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self.signer.sign(msg_id, timestamp, body),
        }

    async def send(self, message: Message) -> Sent:
        url = message.address
        if not isinstance(url, str) or not url:
            raise PermanentError("webhook: the recipient has no webhook URL")
        body = dump(payload(message), self.name)
        await self.post(url, body, self.headers(webhook_id(message.delivery_id), body))
        return Sent(delivered=True)
