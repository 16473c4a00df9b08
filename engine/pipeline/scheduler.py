"""The scheduler: moves due work from SQL to Dramatiq, and recovers work that stopped.

Due work lives in SQL, so a restart loses nothing. Every hand-over is a conditional
UPDATE … RETURNING, so two schedulers running at once never release the same row twice.
Recovery takes seconds: the claims of a worker that died are taken back once their
lease ran out (`engine.store.leases`), and a broker that lost its messages is noticed by its
sentinel (`engine.worker.sentinel`) and handed everything in flight again. The stall timer
(`TIDINGS_STALL_AFTER`) stays the last resort.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from math import ceil

import redis
from sqlalchemy import and_, func, or_, update
from sqlmodel import Session, col, select

from engine.catalog.segments import activity
from engine.pipeline import caps, digests, events, planning, policy, redecide, winner
from engine.pipeline.delivery import DIED
from engine.pipeline.planning import enqueue_deliveries
from engine.store import bulk
from engine.store.models import Delivery, Notification, PlanChunk
from engine.store.outages import is_outage
from engine.store.redis_keys import RedisKeys
from engine.store.states import (
    IN_FLIGHT,
    OWN_MESSAGE,
    SEEN,
    UNPLANNED,
    ChunkStatus,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import aware, now
from engine.worker.runtime import Runtime

log = logging.getLogger("tidings.scheduler")
BATCH = 2000
# The APScheduler job id of the tick.
TICK = "tick"
# Seconds before the scheduler enqueues another drain of delivery events while one waits.
DRAIN_EVERY = 5


def tick(rt: Runtime, at: datetime | None = None) -> dict[str, int]:
    """One pass over everything due; returns how many of each kind were handed over."""
    at = at or now()
    try:
        lost = rt.sentinel.lost()
    except redis.RedisError:
        rt.judge.reset()  # liveness keys may be missing once it is back
        raise
    if lost:
        rt.judge.reset()
    return {
        "requeued": requeue_in_flight(rt, at) if lost else 0,
        "notifications": release_notifications(rt, at),
        "taken_back": take_back(rt, at),
        "chunks": retry_chunks(rt, at),
        "digests": digests.release(rt, at),
        "ab_tests": winner.decide_due(rt.db, at),
        "deliveries": release_deliveries(rt, at),
        "digested": digests.settle(rt, at),
        "stalled": retry_stalled(rt, at),
        "events": kick_events(rt),
    }


def kick_events(rt: Runtime) -> int:
    """Enqueue a drain of delivery events when some wait, unless one was enqueued in the
    last `DRAIN_EVERY` seconds; 1 when it enqueued one."""
    if not events.pending(rt.db):
        return 0
    key = RedisKeys.from_settings(rt.settings).events_drain
    if not rt.counters.client.set(key, b"1", nx=True, ex=DRAIN_EVERY):
        return 0
    rt.dispatch.drain_events()
    return 1


def requeue_in_flight(rt: Runtime, at: datetime) -> int:
    """Hand the broker again everything SQL says is waiting for a job: queued deliveries
    (a retry keeps its delay), pending plan chunks, notifications waiting for their plan.

    Called when the broker may have lost its messages (Redis restarted empty, flushed, or
    did not answer). Every job claims its rows first, so a message that survived as well
    finds nothing left to do.
    """
    with rt.db.session() as session:
        queued = session.exec(
            select(Delivery.id, Delivery.channel, Delivery.notification_id, Delivery.due_at)
            .where(col(Delivery.status) == DeliveryStatus.QUEUED)
            .order_by(col(Delivery.id))
        ).all()
        chunks = session.exec(
            select(PlanChunk.notification_id, PlanChunk.seq)
            .where(col(PlanChunk.status) == ChunkStatus.PENDING)
            .order_by(col(PlanChunk.notification_id), col(PlanChunk.seq))
        ).all()
        waiting = session.exec(
            select(Notification.id, Notification.queue).where(
                col(Notification.status) == NotificationStatus.ACCEPTED,
                col(Notification.enqueued_at).is_not(None),
            )
        ).all()
        queues = _queues(session, {n for _, _, n, _ in queued} | {n for n, _ in chunks})
    later: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for delivery_id, channel, notification_id, due_at in queued:
        assert delivery_id is not None
        due = aware(due_at)
        wait = max(0, ceil((due - at).total_seconds())) if due is not None else 0
        later[wait].append((delivery_id, channel, notification_id))
    for wait, rows in later.items():
        _enqueue(rt, rows, queues, delay_ms=wait * 1000 if wait else None)
    ahead: dict[int, int] = defaultdict(int)
    for notification_id, seq in chunks:  # the chunk chain goes on from the first pending ones
        if ahead[notification_id] < rt.settings.plan_ahead:
            ahead[notification_id] += 1
            rt.dispatch.plan_chunk(notification_id, seq, queues.get(notification_id, "normal"))
    for planned, queue in waiting:
        assert planned is not None
        rt.dispatch.plan(planned, queue)
    count = len(queued) + sum(ahead.values()) + len(waiting)
    log.warning(
        "the broker may have lost its messages; re-enqueued what is in flight",
        extra={"deliveries": len(queued), "chunks": sum(ahead.values()), "plans": len(waiting)},
    )
    return count


def take_back(rt: Runtime, at: datetime) -> int:
    """Deliveries and plan chunks whose lease ran out while their worker is gone go back
    on the queue, each counting an attempt; one out of attempts ends `failed`."""
    with rt.db.session() as session:
        holders = list(
            session.exec(
                select(Delivery.claimed_by)
                .where(
                    col(Delivery.status) == DeliveryStatus.SENDING, col(Delivery.lease_until) < at
                )
                .distinct()
            )
        )
        holders += session.exec(
            select(PlanChunk.claimed_by)
            .where(col(PlanChunk.status) == ChunkStatus.PLANNING, col(PlanChunk.lease_until) < at)
            .distinct()
        ).all()
    gone = rt.judge.gone(holders)
    if not gone:
        return 0
    leased = and_(
        col(Delivery.status) == DeliveryStatus.SENDING,
        col(Delivery.lease_until) < at,
        col(Delivery.claimed_by).in_(gone),
    )
    free = {"claimed_by": None, "lease_until": None, "updated_at": at}
    limit = rt.settings.delivery_max_attempts
    with rt.db.session() as session:
        ended = session.execute(
            update(Delivery)
            .where(leased, col(Delivery.attempts) >= limit - 1)
            .values(
                status=DeliveryStatus.FAILED, attempts=Delivery.attempts + 1, error=DIED, **free
            )
            .returning(col(Delivery.id))
        ).all()
        bulk.add_events(
            session,
            [
                {"delivery_id": i, "status": EventStatus.FAILED, "detail": DIED, "at": at}
                for (i,) in ended
            ],
        )
        back = session.execute(
            update(Delivery)
            .where(leased)
            .values(
                status=DeliveryStatus.QUEUED, attempts=Delivery.attempts + 1, error=DIED, **free
            )
            .returning(col(Delivery.id), col(Delivery.channel), col(Delivery.notification_id))
        ).all()
        chunks = session.execute(
            update(PlanChunk)
            .where(
                col(PlanChunk.status) == ChunkStatus.PLANNING,
                col(PlanChunk.lease_until) < at,
                col(PlanChunk.claimed_by).in_(gone),
            )
            .values(status=ChunkStatus.PENDING, attempts=PlanChunk.attempts + 1, error=DIED, **free)
            .returning(col(PlanChunk.notification_id), col(PlanChunk.seq), col(PlanChunk.attempts))
        ).all()
        for notification_id, seq, attempts in chunks:
            if attempts >= rt.settings.plan_max_attempts:
                planning.end_chunk(session, notification_id, seq, DIED)
        queues = _queues(session, {n for _, _, n in back} | {n for n, _, _ in chunks})
    _enqueue(rt, [(i, c, n) for i, c, n in back], queues)
    for notification_id, seq, attempts in chunks:
        if attempts < rt.settings.plan_max_attempts:
            rt.dispatch.plan_chunk(notification_id, seq, queues.get(notification_id, "normal"))
    log.warning(
        "took back the claims of stopped workers",
        extra={
            "workers": sorted(gone),
            "deliveries": len(back) + len(ended),
            "chunks": len(chunks),
        },
    )
    return len(back) + len(ended) + len(chunks)


def release_notifications(rt: Runtime, at: datetime) -> int:
    """Enqueue plan jobs for notifications that are due (send_at) or stalled before planning."""
    stale = at - timedelta(seconds=rt.settings.stall_after)
    grace = timedelta(seconds=rt.settings.enqueue_grace)
    due = and_(
        col(Notification.status).in_(UNPLANNED),
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
    sent = 0
    try:
        for notification_id, queue in claimed:
            rt.dispatch.plan(notification_id, queue)
            sent += 1
    except Exception:
        # The mark stands only for a dispatch that succeeded: the rest are due again at once.
        with rt.db.session() as session:
            session.execute(
                update(Notification)
                .where(
                    col(Notification.id).in_([n for n, _ in claimed[sent:]]),
                    col(Notification.enqueued_at) == at,
                )
                .values(enqueued_at=None)
            )
        raise
    return len(claimed)


def retry_chunks(rt: Runtime, at: datetime) -> int:
    """Re-enqueue plan chunks that ran too long (a worker died), and the waiting chunks of
    a notification whose planning made no progress for as long (a message was lost)."""
    stale = at - timedelta(seconds=rt.settings.stall_after)
    idle = select(Notification.id).where(
        col(Notification.status) == NotificationStatus.PLANNING,
        col(Notification.updated_at) <= stale,
    )
    with rt.db.session() as session:
        claimed = session.execute(
            update(PlanChunk)
            .where(
                col(PlanChunk.updated_at) <= stale,
                or_(
                    col(PlanChunk.status) == ChunkStatus.PLANNING,
                    and_(
                        col(PlanChunk.status) == ChunkStatus.PENDING,
                        col(PlanChunk.notification_id).in_(idle),
                    ),
                ),
            )
            .values(status=ChunkStatus.PENDING, updated_at=at)
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
        col(Delivery.status).in_(IN_FLIGHT),
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
            .values(status=DeliveryStatus.QUEUED, updated_at=at)
            .returning(col(Delivery.id), col(Delivery.channel), col(Delivery.notification_id))
        ).all()
        queues = _queues(session, {n for _, _, n in claimed})
    _enqueue(rt, [(i, c, n) for i, c, n in claimed], queues)
    return len(claimed)


def release_deliveries(rt: Runtime, at: datetime) -> int:
    """Release scheduled deliveries whose time has come, each decided anew.

    Escalations go only if the notification was not seen on another channel. Every other
    one is decided anew against the recipient's preferences now (`engine.pipeline.redecide`), in
    bulk: an opt-out, unsubscribe, pause, erasure or expiry made while it waited
    suppresses it with that reason, a pause or quiet hours hold it again. Of what may
    still go, deliveries that share a collapse key (or a promotional category) collapse
    to the newest one instead of arriving as a burst, and the rest is counted against its
    caps (once per notification and recipient, one Redis call) and dropped or deferred
    when over one.
    """
    with rt.db.session() as session:
        due = list(
            session.exec(
                select(Delivery)
                .where(
                    col(Delivery.status) == DeliveryStatus.SCHEDULED,
                    col(Delivery.due_at) <= at,
                    # a digest's copies go together (`engine.pipeline.digests`)
                    or_(col(Delivery.reason).is_(None), col(Delivery.reason) != Reason.DIGEST),
                    # the rest of an A/B test waits for its winner (`engine.pipeline.winner`)
                    or_(
                        col(Delivery.reason).is_(None),
                        col(Delivery.reason) != Reason.AB_TEST,
                        col(Delivery.variant).is_not(None),
                    ),
                )
                .order_by(col(Delivery.id))
                .limit(BATCH)
            )
        )
        if not due:
            return 0
        held = [
            redecide.Held(d.id or 0, d.notification_id, d.recipient_id, d.channel, d.category)
            for d in due
        ]
        situation = redecide.load(session, rt.settings, held)
        seen = _seen(session, [d for d in due if d.reason == Reason.ESCALATION])
        suppress: dict[Reason | None, list[int]] = defaultdict(list)
        later: dict[tuple[datetime, Reason | None], list[int]] = defaultdict(list)
        candidates: list[tuple[redecide.Held, Delivery]] = []
        for h, d in zip(held, due, strict=True):
            if d.reason == Reason.ESCALATION and (h.notification_id, h.recipient_id) in seen:
                suppress[Reason.SEEN_ELSEWHERE].append(h.id)
            else:
                candidates.append((h, d))
        fates = redecide.decide(situation, [h for h, _ in candidates], at)
        going: list[tuple[redecide.Held, Delivery]] = []
        for h, d in candidates:
            fate = fates[h.id]
            if fate.status == DeliveryStatus.SUPPRESSED:
                suppress[fate.reason].append(h.id)
            elif fate.status == DeliveryStatus.SCHEDULED and fate.due_at is not None:
                later[(fate.due_at, fate.reason)].append(h.id)
            else:
                going.append((h, d))
        # Of what may still go, a burst of one collapse group is one message: the newest.
        collapsed = policy.release_collapse(
            [(h.id, h.recipient_id, h.channel, _group(d, situation)) for h, d in going]
        )
        suppress[Reason.COLLAPSED] += sorted(collapsed)
        ready = [h for h, _ in going if h.id not in collapsed]
        go, over = _cap(rt, situation, ready, at)
        for delivery_id, fate in over:
            if fate.status == DeliveryStatus.SUPPRESSED:
                suppress[Reason.CAPPED].append(delivery_id)
            elif fate.due_at is not None:
                later[(fate.due_at, Reason.CAPPED)].append(delivery_id)
        events: list[bulk.EventRow] = []
        for reason, ids in suppress.items():
            done = _transition(session, ids, at, status=DeliveryStatus.SUPPRESSED, reason=reason)
            events += [
                {"delivery_id": i, "status": EventStatus.SUPPRESSED, "reason": reason, "at": at}
                for i, _, _ in done
            ]
        for (until, reason), ids in later.items():
            rows = session.execute(
                update(Delivery)
                .where(col(Delivery.id).in_(ids), col(Delivery.status) == DeliveryStatus.SCHEDULED)
                .values(due_at=until, reason=reason, updated_at=at)
                .returning(col(Delivery.id))
            ).all()
            events += [
                {"delivery_id": row[0], "status": EventStatus.SCHEDULED, "reason": reason, "at": at}
                for row in rows
            ]
        released = _transition(session, go, at, status=DeliveryStatus.QUEUED, reason=None)
        events += [
            {"delivery_id": i, "status": EventStatus.QUEUED, "at": at} for i, _, _ in released
        ]
        bulk.add_events(session, events)
        queues = _queues(session, {n for _, _, n in released})
    _enqueue(rt, released, queues)
    return len(released)


def _cap(
    rt: Runtime, situation: redecide.Situation, ready: list[redecide.Held], at: datetime
) -> tuple[list[int], list[tuple[int, policy.Decision]]]:
    """Count released deliveries against their caps (a notification already counted for a
    recipient, say by its inbox copy, passes); returns the ids that go and the fates of
    those over a cap."""
    pairs: dict[tuple[int, str], redecide.Held] = {}
    for h in ready:
        pairs.setdefault((h.notification_id, h.recipient_id), h)
    checks = []
    keys = []
    for (notification_id, recipient_id), h in pairs.items():
        rules = situation.rules(h)
        prefs = situation.prefs.get(recipient_id)
        if rules is None or prefs is None:
            continue
        recipient = situation.recipients.get(recipient_id)
        seen = activity(recipient.last_active_at, at, rt.settings) if recipient else None
        if (found := caps.check(rules, prefs, notification_id, seen)) is not None:
            checks.append(found)
            keys.append((notification_id, recipient_id))
    refused = {
        key: frees_at
        for key, frees_at in zip(keys, caps.admit(rt, checks, at), strict=True)
        if frees_at is not None
    }
    go: list[int] = []
    over: list[tuple[int, policy.Decision]] = []
    for h in ready:
        frees_at = refused.get((h.notification_id, h.recipient_id))
        rules = situation.rules(h)
        if frees_at is None or rules is None:
            go.append(h.id)
        else:
            (fate,) = policy.over_cap(
                rules, [policy.Decision(h.channel, DeliveryStatus.QUEUED)], frees_at
            )
            over.append((h.id, fate))
    return go, over


def _transition(
    session: Session,
    ids: list[int],
    at: datetime,
    *,
    status: DeliveryStatus,
    reason: Reason | None,
) -> list[tuple[int, str, int]]:
    if not ids:
        return []
    rows = session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_(ids), col(Delivery.status) == DeliveryStatus.SCHEDULED)
        .values(status=status, reason=reason, due_at=None, updated_at=at)
        .returning(col(Delivery.id), col(Delivery.channel), col(Delivery.notification_id))
    ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def _group(delivery: Delivery, situation: redecide.Situation) -> str | None:
    """What a released delivery collapses with: its collapse key, its campaign (the steps
    of one campaign never arrive together), or its promotional category."""
    if delivery.reason in OWN_MESSAGE:
        return None
    if delivery.collapse_key:
        return f"key:{delivery.collapse_key}"
    notification = situation.notifications.get(delivery.notification_id)
    if notification is not None and notification.campaign_id is not None:
        return f"campaign:{notification.campaign_id}"
    category = situation.categories.get(delivery.category)
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
            or_(col(Delivery.read_at).is_not(None), col(Delivery.status).in_(SEEN)),
        )
    )
    return {(n, r) for n, r in rows} & pairs


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


def _enqueue(
    rt: Runtime,
    rows: list[tuple[int, str, int]],
    queues: dict[int, str],
    delay_ms: int | None = None,
) -> None:
    by_queue: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for delivery_id, channel, notification_id in rows:
        by_queue[queues.get(notification_id, "normal")].append((delivery_id, channel))
    for queue, items in by_queue.items():
        enqueue_deliveries(rt, items, queue, delay_ms=delay_ms)


def note_run(rt: Runtime, at: datetime | None = None) -> None:
    """Record when a tick finished, for `tidings status` and the console's health page."""
    key = RedisKeys.from_settings(rt.settings).scheduler_ran
    rt.counters.client.set(key, (at or now()).isoformat())


def next_due(rt: Runtime, at: datetime) -> datetime | None:
    """The earliest time SQL says held work falls due: a scheduled delivery (quiet hours,
    a pause, `send_at`, best time, a variant's send time, a digest), a notification's
    `send_at`, or the end of an accepted notification's enqueue grace. None when nothing
    waits. Three aggregate queries on indexed status columns."""
    grace = timedelta(seconds=rt.settings.enqueue_grace)
    with rt.db.session() as session:
        delivery = session.exec(
            select(func.min(Delivery.due_at)).where(
                col(Delivery.status) == DeliveryStatus.SCHEDULED
            )
        ).one()
        unsent = (
            col(Notification.status).in_(UNPLANNED),
            col(Notification.enqueued_at).is_(None),
        )
        send_at = session.exec(select(func.min(Notification.send_at)).where(*unsent)).one()
        created = session.exec(
            select(func.min(Notification.created_at)).where(
                *unsent, col(Notification.send_at).is_(None)
            )
        ).one()
    first = aware(created)
    times = [aware(delivery), aware(send_at), first + grace if first is not None else None]
    return min((t for t in times if t is not None), default=None)


def pause_after(rt: Runtime, handed_over: bool, at: datetime) -> float:
    """Seconds until the next look: `scheduler_interval` after a look that handed work
    over; else until the earliest due time, between `scheduler_interval` and
    `scheduler_idle_interval` — an idle scheduler costs a query pass every few seconds,
    not every second, and held work is still released on time."""
    busy, idle = rt.settings.scheduler_interval, rt.settings.scheduler_idle_interval
    if handed_over or idle <= busy:
        return busy
    due = next_due(rt, at)
    wait = idle if due is None else (due - at).total_seconds()
    return min(max(wait, busy), idle)


def run(rt: Runtime) -> None:
    """Run the scheduler loop until interrupted (APScheduler, one tick at a time, each
    setting when the next one runs: `pause_after`)."""
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(timezone="UTC")

    def job() -> None:
        wait = rt.settings.scheduler_interval
        try:
            at = now()
            counts = tick(rt, at)
            if any(counts.values()):
                log.info("released %s", counts)
            note_run(rt)
            wait = pause_after(rt, any(counts.values()), now())
        except Exception as exc:
            if is_outage(exc):
                if isinstance(exc, redis.RedisError):
                    rt.sentinel.failed = True  # what was handed over meanwhile may be lost
                    rt.judge.reset()
                log.warning("scheduler tick waits for %s: %s", type(exc).__name__, exc)
            else:
                log.exception("scheduler tick failed; retrying on the next one")
        scheduler.modify_job(TICK, next_run_time=now() + timedelta(seconds=wait))

    scheduler.add_job(
        job,
        "interval",
        id=TICK,
        seconds=max(rt.settings.scheduler_idle_interval, rt.settings.scheduler_interval),
        max_instances=1,
        coalesce=True,
        next_run_time=now(),
    )
    scheduler.start()
