"""Dramatiq middleware of Tidings' own: what a job's queue means for its database writes.

A broadcast's jobs write a lot; an order notification's job writes a little and must not
wait behind them. On SQLite, where writers take turns, the writes of jobs from the queues
that can wait are background work (`engine.store.db.background`): they take a turn only
while no critical job and no API request waits for one. On PostgreSQL this changes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import dramatiq
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from engine.store.db import background


class GiveWay(Middleware):
    """The writes of a job give way to foreground writes, unless its queue is in `first`.

    `first` names the queues whose jobs never give way (`critical`); a message that comes
    back from its delay queue counts as its own queue's.
    """

    def __init__(self, first: Iterable[str]) -> None:
        self.first = frozenset(first)
        self._jobs = threading.local()  # the job a worker thread runs, while it gives way

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        if q_name(message.queue_name) in self.first:
            return
        stack = ExitStack()
        stack.enter_context(background())
        self._jobs.giving_way = stack

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        stack: ExitStack | None = getattr(self._jobs, "giving_way", None)
        if stack is not None:
            self._jobs.giving_way = None
            stack.close()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.after_process_message(broker, message)
