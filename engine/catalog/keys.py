"""API keys: minted once, stored as a SHA-256, scoped to `send`, `read`, `links`, `recipients`
and `admin`.

`links` mints a recipient's page links, which open their inbox and write their
preferences: more than sending a notification, so not part of `send`. Keys are listed
(never their secret) and revoked by the CLI and the admin API; a revocation bumps a
counter in Redis (`RedisKeys.keys_revoked`) so every API process drops its cache of live
keys at once.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import redis
from sqlmodel import Session, col, select

from engine.settings import Settings
from engine.store.models import ApiKey
from engine.store.redis_keys import RedisKeys, counters_url
from engine.timeutil import iso, now

SCOPES = ("send", "read", "links", "recipients", "admin")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(
    session: Session, *, name: str, scopes: list[str], plain: str | None = None
) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned here and never again.

    `plain` is for a key derived elsewhere (the demo's); normally a random one is made.
    """
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes are some of {', '.join(SCOPES)}; got {', '.join(scopes)}")
    plain = plain or "tk_" + secrets.token_urlsafe(32)
    row = ApiKey(name=name, key_hash=digest(plain), scopes=sorted(set(scopes)))
    session.add(row)
    return row, plain


def find(session: Session, plain: str) -> ApiKey | None:
    """The live key matching `plain`, if any."""
    row = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == digest(plain))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


def listing(session: Session) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))))


def revoke(session: Session, key_id: int) -> ApiKey | None:
    """Revoke a key for good (revoking twice keeps the first time); None if there is none."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now()
        session.add(row)
    return row


def public(row: ApiKey) -> dict[str, Any]:
    """A key as the CLI and the API show it: never its secret, not even its hash."""
    return {
        "id": row.id,
        "name": row.name,
        "scopes": list(row.scopes),
        "created_at": iso(row.created_at),
        "last_used_at": iso(row.last_used_at),
        "revoked_at": iso(row.revoked_at),
    }


def announce_revocation(settings: Settings) -> bool:
    """Tell every API process to drop its cached keys; False when Redis did not answer."""
    client = redis.Redis.from_url(counters_url(settings), socket_timeout=5)
    try:
        client.incr(RedisKeys.from_settings(settings).keys_revoked)
    except redis.RedisError:
        return False
    finally:
        client.close()
    return True
