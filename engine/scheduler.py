"""The scheduler: moves due work from SQL to Dramatiq, and re-enqueues work that stalled.

Due work lives in SQL, so a restart loses nothing. Every hand-over is a conditional
UPDATE … RETURNING, so two schedulers running at once never release the same row twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, update
from sqlmodel import Session, col, select

from engine import bulk, planner
from engine.models import Category, Delivery, Notification, PlanChunk, Recipient
from engine.planning import enqueue_deliveries
from engine.runtime import Runtime
from engine.timeutil import now
from preferences import store

log = logging.getLogger("tidings.scheduler")
BATCH = 2000


def tick(rt: Runtime, at: datetime | None = None) -> dict[str, int]:
    """One pass over everything due; returns how many of each kind were handed over."""
    at = at or now()
    return {
        "notifications": release_notifications(rt, at),
        "chunks": retry_chunks(rt, at),
        "deliveries": release_deliveries(rt, at),
        "stalled": retry_stalled(rt, at),
    }


def release_notifications(rt: Runtime, at: datetime) -> int:
    """Enqueue plan jobs for notifications that are due (send_at) or stalled before planning."""
    stale = at - timedelta(seconds=rt.settings.stall_after)
    grace = timedelta(seconds=rt.settings.enqueue_grace)
    due = and_(
        col(Notification.status).in_(("accepted", "planning")),
        or_(
            and_(
                col(Notification.enqueued_at).is_(None),
                or_(
                    col(Notification.send_at) <= at,
                    and_(
                        col(Notification.send_at).is_(None),
                        col(Notification.created_at) <= at - grace,
                    ),
                ),
            ),
            and_(col(Notification.enqueued_at) <= stale, col(Notification.updated_at) <= stale),
        ),
    )
    with rt.db.session() as session:
        ids = list(session.exec(select(Notification.id).where(due).limit(BATCH)))
        if not ids:
            return 0
        claimed = session.execute(
            update(Notification)
            .where(col(Notification.id).in_(ids), due)
            .values(enqueued_at=at, updated_at=at)
            .returning(col(Notification.id), col(Notification.queue))
        ).all()
    for notification_id, queue in claimed:
        rt.dispatch.plan(notification_id, queue)
    return len(claimed)


def retry_chunks(rt: Runtime, at: datetime) -> int:
    """Re-enqueue plan chunks that ran too long (a worker died), and the waiting chunks of
    a notification whose planning made no progress for as long (a message was lost)."""
    stale = at - timedelta(seconds=rt.settings.stall_after)
    idle = select(Notification.id).where(
        col(Notification.status) == "planning", col(Notification.updated_at) <= stale
    )
    with rt.db.session() as session:
        claimed = session.execute(
            update(PlanChunk)
            .where(
                col(PlanChunk.updated_at) <= stale,
                or_(
                    col(PlanChunk.status) == "planning",
                    and_(
                        col(PlanChunk.status) == "pending",
                        col(PlanChunk.notification_id).in_(idle),
                    ),
                ),
            )
            .values(status="pending", updated_at=at)
            .returning(col(PlanChunk.notification_id), col(PlanChunk.seq))
        ).all()
        queues = _queues(session, {n for n, _ in claimed})
    for notification_id, seq in claimed:
        rt.dispatch.plan_chunk(notification_id, seq, queues.get(notification_id, "normal"))
    return len(claimed)


def retry_stalled(rt: Runtime, at: datetime) -> int:
    """Deliveries queued (or being sent) for too long go back on the queue."""
    stale = at - timedelta(seconds=rt.settings.stall_after)
    stalled = and_(
        col(Delivery.status).in_(("queued", "sending")),
        func.coalesce(col(Delivery.due_at), col(Delivery.updated_at)) <= stale,
        col(Delivery.updated_at) <= stale,
    )
    with rt.db.session() as session:
        ids = list(session.exec(select(Delivery.id).where(stalled).limit(BATCH * 5)))
        if not ids:
            return 0
        claimed = session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids), stalled)
            .values(status="queued", updated_at=at)
            .returning(col(Delivery.id), col(Delivery.channel), col(Delivery.notification_id))
        ).all()
        queues = _queues(session, {n for _, _, n in claimed})
    _enqueue(rt, [(i, c, n) for i, c, n in claimed], queues)
    return len(claimed)


def release_deliveries(rt: Runtime, at: datetime) -> int:
    """Release scheduled deliveries whose time has come.

    Escalations go only if the notification was not seen on another channel, and wait
    out quiet hours; deliveries released together that share a collapse key (or a
    promotional category) collapse to the newest one instead of arriving as a burst.
    """
    with rt.db.session() as session:
        due = list(
            session.exec(
                select(Delivery)
                .where(col(Delivery.status) == "scheduled", col(Delivery.due_at) <= at)
                .order_by(col(Delivery.id))
                .limit(BATCH)
            )
        )
        if not due:
            return 0
        categories = {c.key: c for c in session.exec(select(Category))}
        seen = _seen(session, [d for d in due if d.reason == "escalation"])
        held = _quiet(rt, session, [d for d in due if d.reason == "escalation"], categories, at)
        groups = [(d.id or 0, d.recipient_id, d.channel, _group(d, categories)) for d in due]
        collapsed = planner.release_collapse(groups)
        go: list[int] = []
        suppress: dict[str, list[int]] = defaultdict(list)
        for d in due:
            assert d.id is not None
            if d.reason == "escalation" and (d.notification_id, d.recipient_id) in seen:
                suppress["seen_elsewhere"].append(d.id)
            elif d.id in collapsed:
                suppress["collapsed"].append(d.id)
            elif d.id not in held:
                go.append(d.id)
        events: list[dict[str, Any]] = []
        for reason, ids in suppress.items():
            done = _transition(session, ids, at, status="suppressed", reason=reason)
            events += [
                {"delivery_id": i, "status": "suppressed", "reason": reason, "at": at}
                for i, _, _ in done
            ]
        for delivery_id, until in held.items():
            session.execute(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id, col(Delivery.status) == "scheduled")
                .values(due_at=until, reason="quiet_hours", updated_at=at)
            )
            events.append(
                {
                    "delivery_id": delivery_id,
                    "status": "scheduled",
                    "reason": "quiet_hours",
                    "at": at,
                }
            )
        released = _transition(session, go, at, status="queued", reason=None)
        events += [{"delivery_id": i, "status": "queued", "at": at} for i, _, _ in released]
        bulk.add_events(session, events)
        queues = _queues(session, {n for _, _, n in released})
    _enqueue(rt, released, queues)
    return len(released)


def _transition(
    session: Session, ids: list[int], at: datetime, *, status: str, reason: str | None
) -> list[tuple[int, str, int]]:
    if not ids:
        return []
    rows = session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_(ids), col(Delivery.status) == "scheduled")
        .values(status=status, reason=reason, due_at=None, updated_at=at)
        .returning(col(Delivery.id), col(Delivery.channel), col(Delivery.notification_id))
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _group(delivery: Delivery, categories: dict[str, Category]) -> str | None:
    if delivery.reason in ("escalation", "digest"):
        return None
    if delivery.collapse_key:
        return f"key:{delivery.collapse_key}"
    category = categories.get(delivery.category)
    if category is not None and category.kind == "promotional":
        return f"category:{category.key}"
    return None


def _seen(session: Session, escalations: list[Delivery]) -> set[tuple[int, str]]:
    if not escalations:
        return set()
    pairs = {(d.notification_id, d.recipient_id) for d in escalations}
    rows = session.exec(
        select(Delivery.notification_id, Delivery.recipient_id).where(
            col(Delivery.notification_id).in_({n for n, _ in pairs}),
            col(Delivery.recipient_id).in_({r for _, r in pairs}),
            or_(col(Delivery.read_at).is_not(None), col(Delivery.status).in_(planner.SEEN)),
        )
    )
    return {(n, r) for n, r in rows} & pairs


def _quiet(
    rt: Runtime,
    session: Session,
    escalations: list[Delivery],
    categories: dict[str, Category],
    at: datetime,
) -> dict[int, datetime]:
    """Escalations that would land in quiet hours wait for the window's end."""
    if not escalations:
        return {}
    ids = {d.recipient_id for d in escalations}
    recipients = list(session.exec(select(Recipient).where(col(Recipient.id).in_(ids))))
    prefs = store.load_many(session, recipients, settings=rt.settings)
    held: dict[int, datetime] = {}
    for d in escalations:
        category = categories.get(d.category)
        if category is None or d.recipient_id not in prefs or d.id is None:
            continue
        decision = planner.hold(
            planner.rules_of(category),
            prefs[d.recipient_id],
            planner.Decision(d.channel, "queued"),
            at,
        )
        if decision.status == "scheduled" and decision.due_at is not None:
            held[d.id] = decision.due_at
    return held


def _queues(session: Session, notification_ids: set[int]) -> dict[int, str]:
    if not notification_ids:
        return {}
    return {
        n: q
        for n, q in session.exec(
            select(Notification.id, Notification.queue).where(
                col(Notification.id).in_(notification_ids)
            )
        )
        if n is not None
    }


def _enqueue(rt: Runtime, rows: list[tuple[int, str, int]], queues: dict[int, str]) -> None:
    by_queue: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for delivery_id, channel, notification_id in rows:
        by_queue[queues.get(notification_id, "normal")].append((delivery_id, channel))
    for queue, items in by_queue.items():
        enqueue_deliveries(rt, items, queue)


def run(rt: Runtime) -> None:
    """Run the scheduler loop until interrupted (APScheduler, one tick at a time)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC")

    def job() -> None:
        try:
            counts = tick(rt)
            if any(counts.values()):
                log.info("released %s", counts)
        except Exception:
            log.exception("scheduler tick failed; retrying on the next one")

    scheduler.add_job(
        job,
        "interval",
        seconds=rt.settings.scheduler_interval,
        max_instances=1,
        coalesce=True,
        next_run_time=now(),
    )
    scheduler.start()
