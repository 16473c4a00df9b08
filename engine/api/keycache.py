"""Which scopes an API key has, remembered by the API process but never past a revocation.

Only live keys are remembered (an unknown key costs a SQL lookup and no memory), in an
LRU of `MAX_KEYS` entries kept at most `TTL` seconds. Before trusting it, every request
reads the revocation counter in Redis (`RedisKeys.keys_revoked`), which `tidings keys revoke`
and the admin API bump after the revocation is committed: when it moved, the whole cache
is dropped, so a revoked key is refused on the very next request of every API process.
When Redis does not answer, the cache is not used at all.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from cachetools import TTLCache
from sqlalchemy import update
from sqlmodel import Session, col

from engine.catalog import keys
from engine.store.db import Database
from engine.store.models import ApiKey
from engine.timeutil import now

log = logging.getLogger("tidings.api")
MAX_KEYS = 1024
TTL = 300.0
# `last_used_at` is written at most this often per key and process (seconds).
TOUCH_EVERY = 60.0


@dataclass
class LiveKey:
    id: int
    scopes: frozenset[str]
    touched: float = 0.0


class KeyCache:
    """Live keys by digest for one API process; see the module docstring for the rules."""

    def __init__(self, revoked: str, *, max_keys: int = MAX_KEYS) -> None:
        self.revoked = revoked  # the Redis counter revocations bump
        self._live: TTLCache[str, LiveKey] = TTLCache(maxsize=max_keys, ttl=TTL)
        self._generation: bytes | str | None = None
        self._pending: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._live)

    def clear(self) -> None:
        self._live.clear()

    async def announce(self, redis: aioredis.Redis) -> None:
        """After a revocation: drop this process's cache and tell the others to."""
        self._live.clear()
        await redis.incr(self.revoked)

    async def _usable(self, redis: aioredis.Redis) -> bool:
        try:
            generation = await redis.get(self.revoked)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("cannot read key revocations from Redis (%s): not caching keys", exc)
            self._live.clear()
            return False
        if generation != self._generation:
            self._live.clear()
            self._generation = generation
        return True

    async def scopes(
        self, plain: str, *, db: Database, redis: aioredis.Redis
    ) -> frozenset[str] | None:
        """The scopes of a live key, or None for an unknown or revoked one."""
        digest = keys.digest(plain)
        usable = await self._usable(redis)
        hit = self._live.get(digest) if usable else None
        if hit is None:

            def lookup(session: Session) -> LiveKey | None:
                row = keys.find(session, plain)
                return LiveKey(int(row.id or 0), frozenset(row.scopes)) if row else None

            hit = await db.read(lookup)
            if hit is None:
                return None
            if usable:
                self._live[digest] = hit
        if time.monotonic() - hit.touched > TOUCH_EVERY:
            hit.touched = time.monotonic()
            self._touch(db, hit.id)
        return hit.scopes

    def _touch(self, db: Database, key_id: int) -> None:
        """Note when the key was last used, after the answer (a failure only logs)."""

        def write(session: Session) -> None:
            session.exec(update(ApiKey).where(col(ApiKey.id) == key_id).values(last_used_at=now()))

        task = asyncio.ensure_future(db.write(write))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_logged)

    async def drain(self) -> None:
        """Wait for the `last_used_at` writes still under way (on shutdown)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _logged(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("could not note when an API key was last used: %s", exc)
