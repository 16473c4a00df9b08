"""API keys: minted once, stored as a SHA-256, scoped to `send`, `read`, `links` and `admin`.

`links` mints a recipient's page links, which open their inbox and write their
preferences: more than sending a notification, so not part of `send`.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlmodel import Session, col, select

from engine.models import ApiKey

SCOPES = ("send", "read", "links", "admin")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned here and never again."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes are some of {', '.join(SCOPES)}; got {', '.join(scopes)}")
    plain = "tk_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=digest(plain), scopes=sorted(set(scopes)))
    session.add(row)
    return row, plain


def find(session: Session, plain: str) -> ApiKey | None:
    """The live key matching `plain`, if any."""
    row = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == digest(plain))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row
