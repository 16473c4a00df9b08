"""CSRF protection for the token pages without a server-side session.

A form's token is an HMAC (itsdangerous, with a timestamp) of the page's own signed
link token, so it only validates on the page it was issued for and only for a while.
Browsers' `Origin` and `Sec-Fetch-Site` headers are checked as well: a cross-site
form post is refused even before the token is looked at.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

from itsdangerous import BadSignature, TimestampSigner

FIELD = "csrf_token"
MAX_AGE = 12 * 3600


def _signer(secret: str) -> TimestampSigner:
    return TimestampSigner(secret, salt="tidings.csrf")


def _bind(link_token: str) -> str:
    return hashlib.sha256(link_token.encode()).hexdigest()[:32]


def issue(secret: str, link_token: str) -> str:
    """The CSRF token for forms on the page at `link_token`."""
    return _signer(secret).sign(_bind(link_token)).decode()


def valid(secret: str, link_token: str, value: str | None, *, max_age: int = MAX_AGE) -> bool:
    """Whether `value` was issued for this page, by us, within `max_age` seconds."""
    if not value:
        return False
    try:
        bound = _signer(secret).unsign(value, max_age=max_age).decode()
    except (BadSignature, UnicodeDecodeError):
        return False
    return bound == _bind(link_token)


def same_origin(
    *, origin: str | None, fetch_site: str | None, host: str | None, public_url: str
) -> bool:
    """Whether a browser says the post came from our own pages (absent headers pass).

    Under `Referrer-Policy: no-referrer` browsers send `Origin: null`, so then only
    `Sec-Fetch-Site` speaks; the CSRF token is checked in every case.
    """
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin and origin != "null":
        return urlsplit(origin).netloc in (host, urlsplit(public_url).netloc)
    return True
