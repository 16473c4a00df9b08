"""The email channel: text and HTML mail over SMTP, with one-click unsubscribe.

Tidings hands the SMTP client finished bytes (`wire`), headers written by
`channels.headers`, so what a mail provider reads is what Tidings meant, whatever
policy the client would have folded them with.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from io import BytesIO

import aiosmtplib

from channels import headers
from channels.base import Channel, Message, Sent
from channels.errors import DeliveryError, PermanentError, TransientError
from channels.headers import WIRE
from engine.settings import Settings

DEFAULT_DOMAIN = "tidings.local"


def sender_address(email_from: str) -> str:
    """The bare address in a `From` such as `Tidings <noreply@example.com>`."""
    return parseaddr(email_from)[1] or email_from


def message_id(delivery_id: int, email_from: str) -> str:
    """A `Message-ID` derived from the delivery, so a re-send carries the same one."""
    _, at, domain = sender_address(email_from).rpartition("@")
    return f"<delivery-{delivery_id}@{domain if at and domain else DEFAULT_DOMAIN}>"


def wire(mail: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF lines, 7-bit headers."""
    out = BytesIO()
    BytesGenerator(out, policy=WIRE).flatten(mail)
    return out.getvalue()


def compose(message: Message, settings: Settings) -> EmailMessage:
    """The MIME message for one delivery: text, plus an HTML alternative when there is one."""
    address = message.address
    if not isinstance(address, str) or "@" not in parseaddr(address)[1]:
        raise PermanentError("email: the recipient has no valid email address")
    mail = EmailMessage(policy=WIRE)
    mail["Subject"] = headers.text("Subject", message.title)
    mail["From"] = headers.mailbox("From", settings.email_from)
    mail["To"] = headers.mailbox("To", address)
    # `+0000`, not the obsolete `GMT` zone RFC 5322 (4.3) says not to generate.
    mail["Date"] = format_datetime(datetime.now(UTC))
    mail["Message-ID"] = message_id(message.delivery_id, settings.email_from)
    if message.unsubscribe_url:
        # RFC 8058 one-click unsubscribe; the relay's DKIM signature must cover both.
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.body)
    if message.html:
        mail.add_alternative(message.html, subtype="html")
    return mail


def response_error(stage: str, code: int, text: str, permanent: bool) -> DeliveryError:
    """A delivery error for an SMTP reply refusing part of the transaction."""
    detail = f"email: {stage} refused: {code} {text}".strip()
    return PermanentError(detail) if permanent else TransientError(detail)


class EmailChannel(Channel):
    """Mail through the configured SMTP relay, one connection per message.

    A 5xx for the recipient or the content fails the delivery at once; a 4xx, a
    timeout, a dropped connection or a relay that turns Tidings itself away (login,
    sender, greeting: an operator's fix, not the message's fault) is retried.
    `Sent.provider_id` is the `Message-ID`, which bounces and replies quote.
    """

    name = "email"

    async def send(self, message: Message) -> Sent:
        settings = self.settings
        mail = compose(message, settings)
        try:
            await aiosmtplib.send(
                wire(mail),
                sender=sender_address(settings.email_from),
                recipients=[str(message.address)],
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=settings.smtp_password,
                start_tls=settings.smtp_starttls,
                timeout=settings.http_timeout,  # the one network timeout channels share
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            raise response_error(
                "recipient", refused.code, refused.message, refused.code >= 500
            ) from exc
        except aiosmtplib.SMTPDataError as exc:
            raise response_error("message", exc.code, exc.message, exc.code >= 500) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise response_error("relay", exc.code, exc.message, permanent=False) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            reason = str(exc) or "timed out"
            raise TransientError(f"email: {type(exc).__name__}: {reason}") from exc
        return Sent(delivered=False, provider_id=str(mail["Message-ID"]))
