"""A fresh page link, emailed to the recipient on request.

The one-click unsubscribe link travels in every optional email's headers, and a
forwarded email hands it to someone else. So the unsubscribe page never opens the
preference center or the inbox itself: it offers to email a preference link to the
address on file, where only the recipient reads it. One such email per recipient per
`RESEND_AFTER` seconds, so a leaked link cannot flood an inbox.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import aiosmtplib
import redis.asyncio as aioredis

from engine.settings import Settings
from engine.store.models import Recipient
from engine.store.redis_keys import RedisKeys
from preferences.links import Links
from preferences.pages import i18n

log = logging.getLogger("tidings.pages")
RESEND_AFTER = 600


def compose(recipient: Recipient, url: str, settings: Settings, t: i18n.Translator) -> EmailMessage:
    """The email carrying a preference link, in the recipient's language."""
    mail = EmailMessage()
    mail["Subject"] = t("linkmail.subject")
    mail["From"] = settings.email_from
    mail["To"] = str(recipient.email)
    mail["Date"] = formatdate(usegmt=True)
    domain = parseaddr(settings.email_from)[1].rpartition("@")[2] or "tidings.local"
    mail["Message-ID"] = make_msgid("page-link", domain=domain)
    days = max(1, settings.link_ttl // 86400)
    mail.set_content(t("linkmail.body", url=url, days=days))
    return mail


async def send_preferences_link(
    recipient: Recipient, settings: Settings, redis: aioredis.Redis, t: i18n.Translator
) -> bool:
    """Email the recipient a fresh preference-center link; False when none was sent
    (no email address on file, one sent in the last `RESEND_AFTER` seconds, or the relay
    refused). The page says the same either way, so it tells a stranger nothing."""
    address = parseaddr(recipient.email or "")[1]
    if "@" not in address:
        return False
    held = RedisKeys.from_settings(settings).page_link_sent(recipient.id)
    if not await redis.set(held, 1, nx=True, ex=RESEND_AFTER):
        return False
    url = Links(settings).url(
        recipient.id, recipient.links_version, "preferences", recipient.links_salt
    )
    mail = compose(recipient, f"{url}?lang={t.locale}", settings, t)
    try:
        await aiosmtplib.send(
            mail,
            sender=parseaddr(settings.email_from)[1] or settings.email_from,
            recipients=[address],
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=settings.http_timeout,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        log.warning("could not email a page link to recipient %s: %s", recipient.id, exc)
        return False
    return True
