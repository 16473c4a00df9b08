"""Named locks held until a transaction ends, for decisions that read before they write.

A check-then-insert (is there an earlier delivery with this collapse key? if not, write
one) is only right if no one else can check and insert in between. On PostgreSQL a
transaction-scoped advisory lock on the name makes such sections take turns; it is let
go at commit or rollback, so a crashed job never leaves it held. SQLite has one writer:
the section takes the write lock before it reads (a write that changes nothing), so the
read already sees everything another writer committed, and nobody commits until it does.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlmodel import Session


def key(name: str) -> int:
    """The signed 64-bit number PostgreSQL's advisory locks take, for a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def hold(session: Session, name: str) -> None:
    """Take the lock `name` for the rest of `session`'s transaction (waiting for it)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key(name)})
    else:
        session.execute(text("UPDATE notifications SET id = id WHERE 0"))
