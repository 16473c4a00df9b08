"""What the end-to-end fault tests share: a broadcast's audience, its categories, how many
of its deliveries ended, whether each recipient got one message, the processes under a
supervisor, and a watch on the API's health while something is broken."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func
from sqlmodel import col, select

from engine.catalog import recipients
from engine.schemas.catalog import RecipientIn
from engine.store.db import Database
from engine.store.models import Delivery, Preference
from tests.engine.conftest import send, wait_for
from tests.support import Sink

ORDER = {
    "name": "Order",
    "kind": "transactional",
    "priority": "critical",
    "channels": ["inapp"],
    "templates": {"inapp": {"en": {"title": "Your order", "body": "is here"}}},
}
BLAST = {
    "name": "Blast",
    "kind": "promotional",
    "priority": "critical",
    "channels": ["webhook"],
    "templates": {"webhook": {"en": {"title": "Sale for {{ recipient.id }}", "body": "today"}}},
}
# The states a delivery does not leave.
ENDED = ("sent", "delivered", "failed", "suppressed")


def audience(
    db: Database,
    url: str,
    count: int,
    *,
    prefix: str = "r",
    width: int = 5,
    quiet_hours: bool = True,
) -> list[str]:
    """`count` recipients `{prefix}00000…` (`width` digits), each with its own webhook path
    under `url`, written in bulk; `quiet_hours=False` turns their quiet hours off."""
    ids = [f"{prefix}{i:0{width}d}" for i in range(count)]
    items = [(i, RecipientIn(webhook_url=f"{url}/hook/{i}")) for i in ids]
    with db.session() as session:
        for start in range(0, count, 2000):
            recipients.upsert_many(session, items[start : start + 2000])
    if not quiet_hours:
        with db.session() as session:
            session.add_all(Preference(recipient_id=i, quiet_hours={"enabled": False}) for i in ids)
    return ids


def start_blast(
    admin: httpx.Client,
    processes: Any,
    db: Database,
    sink: tuple[Sink, str],
    count: int,
    first: int,
) -> str:
    """A `promo.blast` broadcast to `count` webhook recipients, served by one worker (8
    threads) and a scheduler of the test's `processes`, seen under way: returns its id once
    `first` requests reached the sink."""
    receiver, url = sink
    admin.put("/v1/categories/promo.blast", json=BLAST).raise_for_status()
    audience(db, url, count)
    processes.worker(threads=8)
    processes.scheduler()
    nid = send(admin, category="promo.blast", to={"all": True})
    wait_for(lambda: len(receiver.requests) >= first, timeout=60, every=0.02)
    return nid


def ended(db: Database, notification_id: str) -> int:
    """How many of the notification's deliveries are in a state they do not leave."""
    with db.session() as session:
        return int(
            session.exec(
                select(func.count())
                .select_from(Delivery)
                .where(
                    col(Delivery.notification_id) == int(notification_id),
                    col(Delivery.status).in_(ENDED),
                )
            ).one()
        )


def assert_one_message_each(receiver: Sink, count: int) -> None:
    """Every recipient got the broadcast; any repeat is the same message (same webhook-id, body)."""
    ids: dict[str, set[str]] = defaultdict(set)
    bodies: dict[str, set[str]] = defaultdict(set)
    with receiver.lock:
        for path, headers, body in receiver.requests:
            ids[path].add(headers["webhook-id"])
            bodies[path].add(body["title"])
    assert len(ids) == count
    assert all(len(v) == 1 for v in ids.values()), "a recipient got two different messages"
    assert all(len(v) == 1 for v in bodies.values())
    assert len(set().union(*ids.values())) == count


def resends(receiver: Sink) -> int:
    """Requests beyond the first for the same message (same webhook-id)."""
    with receiver.lock:
        ids = [headers["webhook-id"] for _, headers, _ in receiver.requests]
    return len(ids) - len(set(ids))


def children(parent: int) -> dict[int, str]:
    """pid → command line of each live child of `parent`, read from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[1]) == parent:
            found[int(entry.name)] = cmdline
    return found


def workers(parent: int, queue: str | None = None) -> set[int]:
    """The `engine.worker.process` children of `parent`, optionally only those serving `queue`."""
    return {
        pid
        for pid, cmd in children(parent).items()
        if "engine.worker.process" in cmd and (queue is None or f"--queues {queue} " in cmd)
    }


def processes_view(client: httpx.Client) -> dict[str, Any] | None:
    """`/readyz`'s view of the supervised processes, or None while the API does not answer."""
    try:
        body = client.get("/readyz").json()
    except httpx.HTTPError:
        return None
    return body.get("processes")


@contextmanager
def health_watched(client: httpx.Client, every: float = 0.05) -> Iterator[list[str]]:
    """Ask `/healthz` every `every` seconds until the block ends; yields the failures seen."""
    failures: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                client.get("/healthz").raise_for_status()
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            time.sleep(every)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield failures
    finally:
        done.set()
        watcher.join()
