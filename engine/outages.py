"""Telling an outage from a fault: an unreachable database or Redis is waited out and
retried without counting an attempt; anything else (a bug, bad data) counts one.

Jobs are retried a bounded number of times, so a poisoned delivery or chunk ends
`failed` instead of being retried forever. An outage must not spend those attempts:
work that meets a stopped PostgreSQL or Redis resumes by itself once it answers.
"""

from __future__ import annotations

import redis
from sqlalchemy import exc as sql

# SQLite reports a busy database and a missing table alike as OperationalError; only the
# first is an outage.
SQLITE_OUTAGE = ("database is locked", "unable to open database", "disk i/o error")


def is_outage(error: BaseException) -> bool:
    """Whether `error` means a database or Redis did not answer (retry it later)."""
    if isinstance(error, redis.ConnectionError | redis.TimeoutError | sql.DisconnectionError):
        return True
    if isinstance(error, sql.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, sql.OperationalError | sql.InterfaceError):
            dialect = type(error.orig).__module__.split(".")[0]
            if dialect in ("sqlite3", "_sqlite3"):
                return any(text in str(error.orig).lower() for text in SQLITE_OUTAGE)
            return True
    return False


def sql_unreachable(error: BaseException) -> bool:
    """Whether `error` means the SQL database did not answer (the API's 503)."""
    return not isinstance(error, redis.RedisError) and is_outage(error)
