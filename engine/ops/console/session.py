"""Who is signed in to the console: a signed, expiring cookie naming an `admin` API key.

The cookie holds the key's row id and a random session id, signed with the
installation's secret (itsdangerous) and stamped with when it was issued; never the
key itself. Every request checks the signature, the age (`Settings.console_session_ttl`
seconds) and that the key is still live and still `admin`, so revoking the key signs
its sessions out. Forms carry a CSRF token bound to the session id
(`preferences.pages.csrf`), and the sign-in form one bound to a short-lived cookie of
its own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlmodel import Session

from engine.catalog import keys
from engine.store.models import ApiKey

COOKIE = "tidings_console"
# Binds the sign-in form's CSRF token before there is a session.
SIGN_IN_COOKIE = "tidings_console_sign_in"
SALT = "tidings.console.session"


@dataclass(frozen=True)
class Operator:
    """A signed-in person: the admin key they signed in with (by id and name) and the
    session id their forms' CSRF tokens are bound to."""

    key_id: int
    key_name: str
    session_id: str


class SignedOut(Exception):
    """No usable session: `reason` is `missing`, `invalid`, `expired` or `revoked`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _serializer(secrets_: list[str]) -> URLSafeTimedSerializer:
    # The newest secret signs; older ones (`secret_key_previous`) still verify.
    return URLSafeTimedSerializer(list(reversed(secrets_)), salt=SALT)


def sign_in(session: Session, plain: str) -> ApiKey | None:
    """The live `admin` key matching `plain`, or None (unknown, revoked or not admin)."""
    row = keys.find(session, plain.strip())
    if row is None or "admin" not in row.scopes:
        return None
    return row


def issue(signing_keys: list[str], key: ApiKey) -> str:
    """A new session's cookie value for `key`."""
    payload = {"k": key.id, "s": secrets.token_urlsafe(16)}
    return _serializer(signing_keys).dumps(payload)


def check(signing_keys: list[str], value: str | None, *, max_age: int) -> dict[str, Any]:
    """The payload of a session cookie issued within `max_age` seconds.

    Raises `SignedOut` (`missing`, `invalid` or `expired`).
    """
    if not value:
        raise SignedOut("missing")
    try:
        payload = _serializer(signing_keys).loads(value, max_age=max_age)
    except SignatureExpired:
        raise SignedOut("expired") from None
    except BadSignature:
        raise SignedOut("invalid") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), int):
        raise SignedOut("invalid")
    if not isinstance(payload.get("s"), str):
        raise SignedOut("invalid")
    return payload


def operator(session: Session, payload: dict[str, Any]) -> Operator:
    """The operator of a checked cookie, if their key is still live and `admin`.

    Raises `SignedOut("revoked")` otherwise.
    """
    row = session.get(ApiKey, payload["k"])
    if row is None or row.revoked_at is not None or "admin" not in row.scopes:
        raise SignedOut("revoked")
    return Operator(key_id=payload["k"], key_name=row.name, session_id=payload["s"])
