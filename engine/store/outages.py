"""Telling an outage from a fault: an unreachable database or Redis is waited out and
retried without counting an attempt; anything else (a bug, bad data) counts one.

Jobs are retried a bounded number of times, so a poisoned delivery or chunk ends
`failed` instead of being retried forever. An outage must not spend those attempts:
work that meets a stopped PostgreSQL or Redis resumes by itself once it answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from sqlalchemy import exc as sql

T = TypeVar("T")
log = logging.getLogger("tidings.outages")

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


def ride_out(fn: Callable[[], T], *, wait: float, what: str) -> T:
    """`fn()`, called again while it fails with an outage, backing off from 0.2 s to 5 s,
    for at most `wait` seconds; any other error, and the outage after that, propagate.

    Only for work that is safe to redo from the start (a claim, a transaction that rolled
    back): the job waits for the database instead of spending its bounded retries.
    """
    deadline = time.monotonic() + wait
    pause = 0.2
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_outage(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: waiting for %s", what, _service(exc))
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _service(error: BaseException) -> str:
    return "Redis" if isinstance(error, redis.RedisError) else "the database"
