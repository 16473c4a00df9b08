"""Noticing a broker that lost its queues, so the scheduler re-enqueues what is in flight
at once instead of waiting for the stall timer.

The scheduler keeps a sentinel key beside the broker's queues (Redis keeps both or loses
both). A sentinel that is gone means Redis restarted empty or was flushed; a Redis that
did not answer may have dropped messages handed to it meanwhile. Either way, what SQL
says is in flight is handed to the broker again; claims are conditional, so a message
that did survive finds nothing left to do.
"""

from __future__ import annotations

import uuid

import redis


class Sentinel:
    """Tells the scheduler when the broker may have lost messages."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self.token = uuid.uuid4().hex
        self.failed = False

    def lost(self) -> bool:
        """True once after the sentinel vanished or Redis failed to answer; raises while
        Redis does not answer."""
        try:
            fresh = bool(self.client.set(self.key, self.token, nx=True))
        except redis.RedisError:
            self.failed = True
            raise
        if fresh or self.failed:
            self.failed = False
            return True
        return False
