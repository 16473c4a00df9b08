"""The log channel: a development sink that writes each message to the log."""

from __future__ import annotations

import logging

from channels.base import Channel, Message, Sent

logger = logging.getLogger("tidings.channels.log")


class LogChannel(Channel):
    """Logs what would have been sent, without the recipient's address, and reports it
    delivered. Useful in development and for trying out categories and templates."""

    name = "log"

    async def send(self, message: Message) -> Sent:
        logger.info(
            "delivery %s to %s [%s]: %s",
            message.delivery_id,
            message.recipient_id,
            message.category,
            message.title,
        )
        return Sent(delivered=True)
