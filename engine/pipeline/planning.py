"""Planning: cut a notification's audience into chunks, and plan each chunk in bulk.

A chunk loads its recipients and their preferences in two queries, asks the pure
rules in `engine.pipeline.policy`, checks every cap in one Redis call, and writes its
deliveries and their first events in one transaction. Replaying a chunk (a worker
died, Redis lost the message) skips recipients already planned.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple, cast

from sqlalchemy import and_, func, null, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from channels.base import ADDRESS_FIELDS
from engine import metrics
from engine.catalog.segments import activity, audience_filter, segment_at
from engine.pipeline import caps, policy, progress, rhythm, sendtime, variants
from engine.pipeline.cancel import is_cancelled
from engine.pipeline.content import Composer, Copy
from engine.pipeline.templates import RenderError
from engine.settings import Settings
from engine.store import bulk, locks, turns
from engine.store.leases import chunk_lease
from engine.store.models import Category, Delivery, Notification, PlanChunk, Recipient
from engine.store.outages import is_outage, ride_out
from engine.store.states import (
    CHUNK_OPEN,
    UNPLANNED,
    ChunkStatus,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import aware, now
from engine.worker.runtime import Runtime
from preferences import store
from preferences.model import EffectivePreferences

log = logging.getLogger("tidings.planning")
DIED = "its worker stopped while planning it"
# How soon a chunk of a campaign step looks again when another step holds the turn (ms).
TURN_WAIT_MS = 500


def page_links(
    rt: Runtime, recipient: Recipient, category: Category, delivery_id: int | None = None
) -> dict[str, str]:
    """Signed page links for a recipient; no unsubscribe link for a required category.

    The unsubscribe link names `delivery_id`, the message it travels in, so an unsubscribe
    through it is counted against that message (an inbox copy rendered while planning has
    no id yet, and its link names nothing).
    """
    version, salt = recipient.links_version, recipient.links_salt
    links = {
        "preferences": rt.links.url(recipient.id, version, "preferences", salt),
        "inbox": rt.links.url(recipient.id, version, "inbox", salt),
    }
    if not category.required:
        links["unsubscribe"] = rt.links.url(
            recipient.id, version, "unsubscribe", salt, delivery_id=delivery_id
        )
    return links


def addressable(recipient: Recipient) -> list[str]:
    """Channels this recipient has an address for."""
    out = []
    for channel, field in ADDRESS_FIELDS.items():
        if field is None or getattr(recipient, field, None):
            out.append(channel)
    return out


def reachable(channels: Sequence[str]) -> Callable[[Any], tuple[str, ...]]:
    """Which of `channels` a recipient has an address for (as `addressable` says), asked
    of every recipient of a chunk: only the addresses those channels need are looked at."""
    fields = [(c, ADDRESS_FIELDS[c]) for c in channels if c in ADDRESS_FIELDS]
    if all(field is None for _, field in fields):
        always = tuple(c for c, _ in fields)
        return lambda _recipient: always
    return lambda r: tuple([c for c, field in fields if field is None or getattr(r, field)])


class Planned(NamedTuple):
    """A recipient as a chunk reads them (`_load_recipients`): their addresses
    (`ADDRESS_FIELDS`), zone and locale, what copy may say of them (`content.reader`),
    their links' version and salt, when they were last active (read only for caps by
    activity, else None), and what they stored (`store.STORED`: `stored_by` names their
    row, None when they stored nothing)."""

    id: str
    name: str | None
    attributes: dict[str, Any] | None
    email: str | None
    push_tokens: list[str] | None
    phone: str | None
    webhook_url: str | None
    timezone: str | None
    locale: str | None
    links_version: int
    links_salt: str | None
    last_active_at: datetime | None
    stored_by: str | None
    stored_channels: str | None
    stored_categories: str | None
    stored_caps: str | None
    stored_quiet_hours: str | None
    stored_paused_until: datetime | None
    stored_digest: str | None
    stored_unsubscribed: bool | None

    @property
    def written(self) -> store.Written | None:
        """What they stored, as `store.shared` takes it."""
        return None if self.stored_by is None else cast(store.Written, self[_WRITTEN:])


_RECIPIENT = Planned._fields[: Planned._fields.index("stored_by")]
_WRITTEN = len(_RECIPIENT) + 1
ACTIVE = "last_active_at"


def _cuts(
    session: Session, notification: Notification, rt: Runtime, size: int
) -> Iterator[tuple[str, str, int]]:
    """The audience cut into chunks of `size` in id order, as (first id, last id, size),
    selected by `segments.audience_filter`.

    The database walks the ids: past a first read of `size` + 1 ids (an audience that
    fits in one chunk, the usual order notification, needs no other), each chunk is one
    query that skips `size` - 1 ids and returns two, its last and the next one's first,
    so a million recipients cost a thousand rows in Python, not a million.
    """
    where = audience_filter(notification.audience, segment_at(notification), rt.settings)
    rid = col(Recipient.id)
    ids = sa_select(rid).where(*where).order_by(rid)
    connection = session.connection()
    first = list(connection.execute(ids.limit(size + 1)).scalars())
    if len(first) <= size:
        if first:
            yield first[0], first[-1], len(first)
        return
    yield first[0], first[size - 1], size
    lo = first[size]
    while True:
        found = list(connection.execute(ids.where(rid >= lo).offset(size - 1).limit(2)).scalars())
        if not found:  # fewer than `size` left: the last chunk
            hi, count = connection.execute(
                sa_select(func.max(rid), func.count()).where(*where, rid >= lo)
            ).one()
            yield lo, hi, count
            return
        yield lo, found[0], size
        if len(found) == 1:
            return
        lo = found[1]


def plan(rt: Runtime, notification_id: int) -> None:
    """Cut the audience into chunks (recorded in SQL) and enqueue the first `plan_ahead`
    of them; each finished chunk enqueues the next.

    An audience that fits in one chunk (an order notification to one person) is planned
    right here, in the same transaction: no second job, no second write. If planning it
    fails (not an outage), the chunk is recorded and left to a chunk job of its own, whose
    attempts are counted and bounded.
    """
    try:
        _cut(rt, notification_id, inline=True)
    except Exception as exc:
        if is_outage(exc):
            raise
        log.exception("planning notification %s inline failed", notification_id)
        _cut(rt, notification_id, inline=False)


def _cut(rt: Runtime, notification_id: int, *, inline: bool) -> None:
    queued: list[tuple[int, str]] = []
    with rt.db.session() as session:
        notification = session.get(Notification, notification_id)
        if notification is None or notification.status not in UNPLANNED:
            return
        if is_cancelled(notification):
            return
        send_at = aware(notification.send_at)
        if send_at is not None and send_at > now():
            return
        if notification.chunks_total is None:
            chunks: list[dict[str, Any]] = []
            total = 0
            for lo, hi, count in _cuts(session, notification, rt, rt.settings.plan_chunk_size):
                chunks.append(_chunk(notification_id, len(chunks), lo, hi, count))
                total += count
            if not _still_to_cut(session, notification_id):
                session.rollback()  # cancelled, or cut by another job, meanwhile
                return
            inline = (
                inline
                and len(chunks) == 1
                and (
                    notification.campaign_id is None
                    or turns.take(
                        session, campaign_id=notification.campaign_id, step_id=notification_id
                    )
                )
            )
            if inline:
                chunks[0]["status"] = ChunkStatus.PLANNING  # claimed by this job
            bulk.insert_ignore(session, PlanChunk, chunks, conflict=("notification_id", "seq"))
            notification.chunks_total = len(chunks)
            notification.recipients = total
            notification.status = (
                NotificationStatus.PLANNING if chunks else NotificationStatus.PLANNED
            )
            notification.updated_at = now()
            session.add(notification)
            if inline:
                session.flush()
                queued = _plan_claimed(rt, session, notification_id, 0)
        else:
            notification.updated_at = now()
            session.add(notification)
        pending = list(
            session.exec(
                select(PlanChunk.seq).where(
                    col(PlanChunk.notification_id) == notification_id,
                    col(PlanChunk.status) == ChunkStatus.PENDING,
                )
            )
        )
        queue = notification.queue
    enqueue_deliveries(rt, queued, queue)
    for seq in pending[: rt.settings.plan_ahead]:
        rt.dispatch.plan_chunk(notification_id, seq, queue)


def _still_to_cut(session: Session, notification_id: int) -> bool:
    """Whether the notification is still uncut and not cancelled, checked by a write that
    holds its row (PostgreSQL) or the write turn (SQLite) until this job commits: a cancel
    (`engine.pipeline.cancel`) either comes before and is seen, or waits for the cut."""
    touched = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == notification_id,
            col(Notification.cancelled_at).is_(None),
            col(Notification.status) != NotificationStatus.CANCELLED,
            col(Notification.chunks_total).is_(None),
        )
        .values(updated_at=now())
    )
    return getattr(touched, "rowcount", 0) == 1


def _chunk(notification_id: int, seq: int, lo: str, hi: str, size: int) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "seq": seq,
        "lo": lo,
        "hi": hi,
        "size": size,
        "status": ChunkStatus.PENDING,
        "updated_at": now(),
    }


def plan_chunk(rt: Runtime, notification_id: int, seq: int) -> None:
    """Decide every recipient of one chunk and write the deliveries in bulk.

    The chunk is leased first (`pending` → `planning`, `engine.store.leases`), so a duplicate
    message for it (a re-enqueued plan, two schedulers) finds nothing to do and counts no
    caps twice; a chunk whose worker died is taken back once its lease ran out.
    """
    if not _claim_chunk(rt, notification_id, seq):
        return

    def work() -> tuple[list[tuple[int, str]], Notification | None]:
        with rt.db.session() as session:
            return _plan_claimed(rt, session, notification_id, seq), session.get(
                Notification, notification_id
            )

    try:
        # The transaction rolled back: an outage is waited out with the chunk still leased.
        queued, notification = ride_out(work, wait=rt.settings.outage_wait, what="a plan chunk")
    except NotYourTurn:
        _wait_for_turn(rt, notification_id, seq)
        return
    except Exception as exc:
        if not _give_up(rt, notification_id, seq, exc):
            raise
        return
    if notification is None:
        return
    following = seq + rt.settings.plan_ahead
    more = following < (notification.chunks_total or 0)
    enqueue_deliveries(rt, queued, notification.queue)
    if more:  # the next chunk goes behind this one's deliveries
        rt.dispatch.plan_chunk(notification_id, following, notification.queue)


class NotYourTurn(Exception):
    """Another step of the campaign is planning (`engine.store.turns`)."""


def _wait_for_turn(rt: Runtime, notification_id: int, seq: int) -> None:
    """Hand a leased chunk of a campaign step back (`pending`, no attempt counted) and
    come back for it in `TURN_WAIT_MS`: another step of its campaign is planning."""
    with rt.db.session() as session:
        session.execute(
            update(PlanChunk)
            .where(
                col(PlanChunk.notification_id) == notification_id,
                col(PlanChunk.seq) == seq,
                col(PlanChunk.status) == ChunkStatus.PLANNING,
            )
            .values(status=ChunkStatus.PENDING, claimed_by=None, lease_until=None, updated_at=now())
        )
        notification = session.get(Notification, notification_id)
        queue = notification.queue if notification is not None else None
    if queue is not None:
        rt.dispatch.plan_chunk(notification_id, seq, queue, delay_ms=TURN_WAIT_MS)


def _claim_chunk(rt: Runtime, notification_id: int, seq: int) -> bool:
    """Lease a pending chunk to this worker, or take it back from a worker that died
    holding it (counting an attempt); False when it is not this job's to plan."""
    holder = rt.liveness.start()
    at = now()
    this = and_(col(PlanChunk.notification_id) == notification_id, col(PlanChunk.seq) == seq)
    lease = {"claimed_by": holder, "lease_until": chunk_lease(rt.settings, at), "updated_at": at}
    with rt.db.session() as session:
        claimed = session.execute(
            update(PlanChunk)
            .where(this, col(PlanChunk.status) == ChunkStatus.PENDING)
            .values(status=ChunkStatus.PLANNING, **lease)
        )
        if getattr(claimed, "rowcount", 0) == 1:
            return True
        chunk = session.get(PlanChunk, (notification_id, seq))
        expired = aware(chunk.lease_until) if chunk is not None else None
        if (
            chunk is None
            or chunk.status != ChunkStatus.PLANNING
            or expired is None
            or expired >= at
        ):
            return False
        if not rt.judge.gone([chunk.claimed_by]):
            return False
        if chunk.attempts + 1 >= rt.settings.plan_max_attempts:
            end_chunk(session, notification_id, seq, DIED)
            return False
        taken = session.execute(
            update(PlanChunk)
            .where(
                this, col(PlanChunk.status) == ChunkStatus.PLANNING, col(PlanChunk.lease_until) < at
            )
            .values(attempts=PlanChunk.attempts + 1, error=DIED, **lease)
        )
        return getattr(taken, "rowcount", 0) == 1


def end_chunk(session: Session, notification_id: int, seq: int, error: str) -> None:
    """A chunk out of attempts ends `failed` with `error`, counted as finished so its
    notification still completes."""
    ended = session.execute(
        update(PlanChunk)
        .where(
            col(PlanChunk.notification_id) == notification_id,
            col(PlanChunk.seq) == seq,
            col(PlanChunk.status).in_(CHUNK_OPEN),
        )
        .values(
            status=ChunkStatus.FAILED,
            error=error,
            claimed_by=None,
            lease_until=None,
            updated_at=now(),
        )
    )
    if getattr(ended, "rowcount", 0) == 1:
        progress.count_finished(session, notification_id)
        log.error(
            "gave up planning a chunk",
            extra={"notification_id": notification_id, "chunk": seq, "error": error},
        )


def _give_up(rt: Runtime, notification_id: int, seq: int, error: Exception) -> bool:
    """Put a chunk whose planning failed back to `pending` for the job's retry, counting
    the attempt unless the cause was an outage; True when it is out of attempts and ended
    `failed` (counted as finished, so its notification still completes)."""
    detail = f"{type(error).__name__}: {error}"[:2000]
    counted = not is_outage(error)
    with rt.db.session() as session:
        chunk = session.get(PlanChunk, (notification_id, seq))
        if chunk is None or chunk.status != ChunkStatus.PLANNING:
            return False
        tries = chunk.attempts + 1 if counted else chunk.attempts
        gone = tries >= rt.settings.plan_max_attempts
        session.execute(
            update(PlanChunk)
            .where(
                col(PlanChunk.notification_id) == notification_id,
                col(PlanChunk.seq) == seq,
                col(PlanChunk.status) == ChunkStatus.PLANNING,
            )
            .values(
                status=ChunkStatus.FAILED if gone else ChunkStatus.PENDING,
                attempts=tries,
                error=detail,
                updated_at=now(),
            )
        )
        if gone:
            progress.count_finished(session, notification_id)
    log.error(
        "planning chunk failed",
        extra={
            "notification_id": notification_id,
            "chunk": seq,
            "attempts": tries,
            "given_up": gone,
            "error": detail,
        },
    )
    return gone


def _plan_claimed(
    rt: Runtime, session: Session, notification_id: int, seq: int
) -> list[tuple[int, str]]:
    """Plan a chunk this job has claimed and mark it done, in `session`'s transaction;
    returns the deliveries to hand to deliver jobs (none if the chunk was finished elsewhere)."""
    chunk = session.get(PlanChunk, (notification_id, seq))
    notification = session.get(Notification, notification_id)
    if chunk is None or notification is None:
        return []
    if notification.campaign_id is not None and not turns.take(
        session, campaign_id=notification.campaign_id, step_id=notification_id
    ):
        raise NotYourTurn(notification_id)
    category = session.get(Category, notification.category)
    # A chunk claimed just before its notification was cancelled writes nothing.
    live = category is not None and not is_cancelled(notification)
    queued = _plan(rt, session, notification, category, chunk) if live and category else []
    finished = session.execute(
        update(PlanChunk)
        .where(
            col(PlanChunk.notification_id) == notification_id,
            col(PlanChunk.seq) == seq,
            col(PlanChunk.status) == ChunkStatus.PLANNING,
        )
        .values(status=ChunkStatus.DONE, updated_at=now())
    )
    if getattr(finished, "rowcount", 0) != 1:  # reclaimed as stalled and finished elsewhere
        session.rollback()
        return []
    progress.count_finished(session, notification_id)
    return queued


def enqueue_deliveries(
    rt: Runtime, rows: list[tuple[int, str]], queue: str, *, delay_ms: int | None = None
) -> None:
    """Hand queued deliveries (id, channel) to deliver jobs, one channel per job."""
    by_channel: dict[str, list[int]] = defaultdict(list)
    for delivery_id, channel in rows:
        by_channel[channel].append(delivery_id)
    size = rt.settings.deliver_chunk_size
    for ids in by_channel.values():
        for start in range(0, len(ids), size):
            rt.dispatch.deliver(ids[start : start + size], queue, delay_ms=delay_ms)


def _load_recipients(
    session: Session,
    notification: Notification,
    chunk: PlanChunk,
    settings: Settings,
    *,
    active: bool,
) -> list[Planned]:
    """The chunk's recipients with what they stored, in one query: its id range, selected
    by the same `audience_filter` that cut it, so a recipient in the range but outside the
    audience is never planned. When they were last active is read only if `active`."""
    where = audience_filter(notification.audience, segment_at(notification), settings)
    columns = [
        getattr(Recipient, name) if name != ACTIVE or active else null().label(name)
        for name in _RECIPIENT
    ]
    query = sa_select(*columns).where(
        col(Recipient.id) >= chunk.lo, col(Recipient.id) <= chunk.hi, *where
    )
    rows = session.connection().execute(store.with_stored(query, col(Recipient.id))).all()
    return [Planned._make(row) for row in rows]


def _plan(
    rt: Runtime,
    session: Session,
    notification: Notification,
    category: Category,
    chunk: PlanChunk,
) -> list[tuple[int, str]]:
    """Plan one chunk; returns the (id, channel) of deliveries to hand to deliver jobs."""
    assert notification.id is not None
    at = now()
    rules = policy.rules_of(category)
    # Only caps by activity ask how active a recipient is.
    active = bool(rules.caps_by_activity)
    todo = _unplanned(session, notification, chunk, rt.settings, active=active)
    # Shared by recipients alike: every question below is asked once per situation.
    prefs = store.shared(((r.id, r.timezone, r.written) for r in todo), settings=rt.settings)
    request = policy.Request(
        channels=tuple(notification.channels) if notification.channels else None,
        expires_at=aware(notification.expires_at),
        collapse_key=notification.collapse_key,
    )
    reach = reachable(policy.candidate_channels(rules, request))
    decisions = policy.decide_many(
        rules, request, ((r.id, prefs[r.id], reach(r)) for r in todo), at
    )
    picks = {r.id: variants.pick(notification, r.id) for r in todo} if notification.variants else {}
    _delay(picks, decisions, at)
    _hold_for_winner(notification, picks, decisions, at)
    if notification.best_time:
        _best_time(session, notification, rules, chunk, prefs, decisions, at)
    replaced = _collapse(session, notification, rules, decisions, at)
    replaced += _rhythm(session, notification, decisions, chunk, at)
    activities = (
        {r.id: activity(r.last_active_at, at, rt.settings) for r in todo}
        if rules.caps_by_activity
        else {}
    )
    _cap(rt, notification.id, rules, prefs, activities, decisions, at, request.expires_at)
    rows = _rows(rt, notification, category, {r.id: r for r in todo}, decisions, picks, at)
    written = bulk.insert_ignore(
        session,
        Delivery,
        rows,
        conflict=("notification_id", "recipient_id", "channel"),
        returning=("id", "channel", "status", "reason"),
    )
    # One event a delivery: an inbox copy stored here has gone out and arrived at once, so
    # its `delivered` tells both (`accept.delivery_views` shows the `queued` step too).
    outcomes = [tuple(row) for row in written]  # (id, channel, status, reason)
    bulk.add_first_events(session, [(i, status, reason) for i, _, status, reason in outcomes], at)
    events: list[bulk.EventRow] = []
    if replaced:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(replaced), col(Delivery.status) == DeliveryStatus.SCHEDULED)
            .values(status=DeliveryStatus.SUPPRESSED, reason=Reason.COLLAPSED, updated_at=at)
        )
        events += [
            {
                "delivery_id": rid,
                "status": EventStatus.SUPPRESSED,
                "reason": Reason.COLLAPSED,
                "at": at,
            }
            for rid in replaced
        ]
    bulk.add_events(session, events)
    log.info(
        "planned chunk",
        extra={
            "notification_id": notification.id,
            "chunk": chunk.seq,
            "recipients": len(todo),
            "deliveries": len(written),
        },
    )
    metrics.outcomes(o[1:] for o in outcomes)
    if any(o[2] == DeliveryStatus.DELIVERED for o in outcomes):
        metrics.latency(policy.INBOX, aware(notification.created_at) or at, at)
    return [(i, channel) for i, channel, status, _ in outcomes if status == DeliveryStatus.QUEUED]


def _unplanned(
    session: Session,
    notification: Notification,
    chunk: PlanChunk,
    settings: Settings,
    *,
    active: bool,
) -> list[Planned]:
    """The chunk's recipients, less those a previous run of this chunk already planned."""
    recipients = _load_recipients(session, notification, chunk, settings, active=active)
    done = set(
        session.exec(
            select(Delivery.recipient_id).where(
                col(Delivery.notification_id) == notification.id,
                col(Delivery.recipient_id) >= chunk.lo,
                col(Delivery.recipient_id) <= chunk.hi,
            )
        )
    )
    return [r for r in recipients if r.id not in done]


def _collapse(
    session: Session,
    notification: Notification,
    rules: policy.Rules,
    decisions: dict[str, list[policy.Decision]],
    at: datetime,
) -> list[int]:
    """Apply the collapse key; returns earlier pending deliveries this one replaces.

    Notifications with one collapse key are planned one at a time from here to their
    commit (`engine.store.locks`): each sees the deliveries of those planned before it, so
    concurrent sends to one recipient deliver once.
    """
    if not (notification.collapse_key and rules.collapse_window and decisions):
        return []
    locks.hold(session, f"collapse:{notification.collapse_key}")
    replaced: list[int] = []
    since = at - timedelta(seconds=rules.collapse_window)
    for rid, earlier in _previous(session, notification, list(decisions), since).items():
        decisions[rid], gone = policy.collapse(decisions[rid], earlier)
        replaced += gone
    return replaced


def _delay(
    picks: dict[str, variants.Variant | None],
    decisions: dict[str, list[policy.Decision]],
    at: datetime,
) -> None:
    """A variant that tests a later send time holds its recipients' deliveries that would
    go now until then (`scheduled/send_at`); when released they are decided anew."""
    for rid, variant in picks.items():
        if variant is None or not variant.send_after or rid not in decisions:
            continue
        due = at + timedelta(seconds=variant.send_after)
        decisions[rid] = [
            policy.Decision(d.channel, DeliveryStatus.SCHEDULED, Reason.SEND_AT, due)
            if d.status == DeliveryStatus.QUEUED
            else d
            for d in decisions[rid]
        ]


def _hold_for_winner(
    notification: Notification,
    picks: dict[str, variants.Variant | None],
    decisions: dict[str, list[policy.Decision]],
    at: datetime,
) -> None:
    """An A/B test slice: recipients outside it wait for the winner (`scheduled/ab_test`
    until the decision), every channel, the inbox too; an escalation moves with them. When
    released they are decided anew, so preferences, quiet hours, caps and collapse apply
    then; a hold that ends after the decision anyway (quiet hours) keeps its reason."""
    decide_at = aware(notification.ab_decide_at)
    if not notification.ab_test or decide_at is None:
        return
    shift = max(decide_at - at, timedelta(0))
    for rid in decisions:
        if picks.get(rid) is not None:
            continue
        held = []
        for d in decisions[rid]:
            if d.status == DeliveryStatus.SCHEDULED and d.reason == Reason.ESCALATION:
                due = d.due_at + shift if d.due_at is not None else decide_at
                d = policy.Decision(d.channel, d.status, d.reason, due)
            elif d.status == DeliveryStatus.QUEUED or (
                d.status == DeliveryStatus.SCHEDULED
                and d.reason != Reason.DIGEST
                and (d.due_at is None or d.due_at < decide_at)
            ):
                d = policy.Decision(d.channel, DeliveryStatus.SCHEDULED, Reason.AB_TEST, decide_at)
            held.append(d)
        decisions[rid] = held


def _best_time(
    session: Session,
    notification: Notification,
    rules: policy.Rules,
    chunk: PlanChunk,
    prefs: dict[str, EffectivePreferences],
    decisions: dict[str, list[policy.Decision]],
    at: datetime,
) -> None:
    """`send_at: "best"`: each recipient's best local hour (`engine.pipeline.sendtime`),
    and what waits for it (`policy.at_best_time`); released, it is decided anew, so
    quiet hours, a pause and caps still apply."""
    zones = {rid: prefs[rid].quiet_hours.timezone for rid in decisions}
    due = sendtime.due_times(
        session,
        category=notification.category,
        zones=zones,
        lo=chunk.lo,
        hi=chunk.hi,
        at=at,
        latest=aware(notification.latest_at),
    )
    expires_at = aware(notification.expires_at)
    for rid, when in due.items():
        decisions[rid] = policy.at_best_time(
            rules, prefs[rid], decisions[rid], when, at, expires_at
        )


def _rhythm(
    session: Session,
    notification: Notification,
    decisions: dict[str, list[policy.Decision]],
    chunk: PlanChunk,
    at: datetime,
) -> list[int]:
    """A campaign step (`engine.pipeline.rhythm.step_fate`): recipients who clicked or
    converted on an earlier step get nothing; earlier steps still waiting are replaced;
    recipients a later step already reached (both fell due together, the later planned
    first) get nothing from this one (`rhythm.too_late`), unless that step was cancelled
    before it went. A step planned when a later step of its campaign is already due (the
    scheduler was down while both fell due) is superseded: nothing of it goes, the later
    step speaks for the campaign. Returns the ids of the replaced deliveries.

    The step holds its campaign's planning turn (`engine.store.turns`), so every other
    step's deliveries are written and committed: one query over the chunk's id range
    reads the ones that matter."""
    if notification.campaign_id is None or not decisions:
        return []
    assert notification.id is not None
    if _later_step_due(session, notification, at):
        for rid in decisions:
            decisions[rid] = rhythm.too_late(decisions[rid])
        return []
    other_steps = select(Notification.id).where(
        col(Notification.campaign_id) == notification.campaign_id,
        col(Notification.id) != notification.id,
    )
    earlier: dict[str, list[rhythm.Earlier]] = defaultdict(list)
    reached_later: set[str] = set()
    for delivery_id, step, rid, channel, state, reason in session.execute(
        sa_select(
            col(Delivery.id),
            col(Delivery.notification_id),
            col(Delivery.recipient_id),
            col(Delivery.channel),
            col(Delivery.status),
            col(Delivery.reason),
        ).where(
            col(Delivery.notification_id).in_(other_steps),
            col(Delivery.recipient_id) >= chunk.lo,
            col(Delivery.recipient_id) <= chunk.hi,
            or_(
                col(Delivery.notification_id) > notification.id,
                col(Delivery.status).in_((*rhythm.ENGAGED, DeliveryStatus.SCHEDULED)),
            ),
        )
    ):
        assert delivery_id is not None
        if step > notification.id:
            if (state, reason) != (DeliveryStatus.SUPPRESSED, Reason.CANCELLED):
                reached_later.add(rid)  # a later step cancelled before it went reached no one
        else:
            earlier[rid].append(rhythm.Earlier(delivery_id, channel, state))
    replaced: list[int] = []
    for rid in decisions.keys() & reached_later:
        decisions[rid] = rhythm.too_late(decisions[rid])
    for rid, found in earlier.items():
        if rid in decisions and rid not in reached_later:
            decisions[rid], gone = rhythm.step_fate(decisions[rid], found)
            replaced += gone
    return replaced


def _later_step_due(session: Session, notification: Notification, at: datetime) -> bool:
    """Whether a later step of the notification's campaign, not cancelled, is due at `at`
    (steps are numbered in the order they go)."""
    later = select(Notification.id).where(
        col(Notification.campaign_id) == notification.campaign_id,
        col(Notification.id) > notification.id,
        col(Notification.send_at) <= at,
        col(Notification.cancelled_at).is_(None),
        col(Notification.status) != NotificationStatus.CANCELLED,
    )
    return session.exec(later.limit(1)).first() is not None


def _cap(
    rt: Runtime,
    notification_id: int,
    rules: policy.Rules,
    prefs: dict[str, EffectivePreferences],
    activities: dict[str, str],
    decisions: dict[str, list[policy.Decision]],
    at: datetime,
    expires_at: datetime | None,
) -> None:
    """Count the chunk against every cap in one Redis call; drop or defer what is over
    (a deferral to the expiry or later ends `suppressed/expired`)."""
    counts: dict[int, bool] = {}  # by the identity of a decision list, shared by many

    def counted(ds: list[policy.Decision]) -> bool:
        found = counts.get(id(ds))
        if found is None:
            found = counts[id(ds)] = policy.counts_against_caps(ds)
        return found

    checks = caps.check_many(
        rules,
        notification_id,
        ((rid, prefs[rid], activities.get(rid)) for rid, ds in decisions.items() if counted(ds)),
    )
    for check, frees_at in zip(checks, caps.admit(rt, checks, at), strict=True):
        if frees_at is not None:
            decisions[check.recipient_id] = policy.expire_late(
                policy.over_cap(rules, decisions[check.recipient_id], frees_at), expires_at
            )


def _rows(
    rt: Runtime,
    notification: Notification,
    category: Category,
    recipients: dict[str, Planned],
    decisions: dict[str, list[policy.Decision]],
    picks: dict[str, variants.Variant | None],
    at: datetime,
) -> list[dict[str, Any]]:
    """Delivery rows, each with its recipient's variant of an A/B test; inbox deliveries
    are rendered and stored as delivered right here.

    A column no row of the chunk has a value for is left out (it is NULL all the same):
    binding a NULL costs the insert what a value does, a thousand times a column.
    """
    composer = Composer()
    common: dict[str, Any] = {  # what every row of the chunk has in common
        "notification_id": notification.id,
        "category": category.key,
        "attempts": 0,
        "created_at": at,
        "updated_at": at,
    }
    if notification.collapse_key is not None:
        common["collapse_key"] = notification.collapse_key
    rows = []
    given: set[str] = set()  # the optional columns some row has a value for
    # What an inbox row stored with a copy says, by the copy's identity (recipients alike
    # share one copy, `Composer`); each copy is kept alive here, so no identity is reused.
    stored: dict[int, tuple[Copy, dict[str, Any]]] = {}
    inbox, queued = policy.INBOX, DeliveryStatus.QUEUED
    for rid, ds in decisions.items():
        recipient = cast(Recipient, recipients[rid])  # as far as copy and links read
        variant = picks.get(rid) if picks else None
        for d in ds:
            row = common.copy()
            row["recipient_id"] = rid
            row["channel"] = d.channel
            row["status"] = d.status
            row["locale"] = recipient.locale
            if variant is not None:
                row["variant"] = variant.name
                given.add("variant")
            if d.reason is not None:
                row["reason"] = d.reason
                given.add("reason")
            if d.due_at is not None:
                row["due_at"] = d.due_at
                given.add("due_at")
            if d.channel == inbox and d.status == queued:
                try:
                    copy = composer.compose(
                        notification,
                        category,
                        d.channel,
                        recipient,
                        partial(page_links, rt, recipient, category),
                        variant,
                    )
                except RenderError as exc:
                    row.update(status=DeliveryStatus.FAILED, error=str(exc), attempts=1)
                    given.add("error")
                else:
                    found = stored.get(id(copy))
                    if found is None:
                        says = {
                            "status": DeliveryStatus.DELIVERED,
                            "attempts": 1,
                            "locale": copy.locale,
                            **{
                                name: value
                                for name, value in (
                                    ("title", copy.title),
                                    ("body", copy.body),
                                    ("action_url", copy.action_url),
                                )
                                if value is not None
                            },
                        }
                        found = stored[id(copy)] = (copy, says)
                        given.update(says)
                    row.update(found[1])
            rows.append(row)
    given -= common.keys()
    given -= {"status", "locale"}
    for name in given:  # rows without a value for it say NULL, so all rows have one shape
        for row in rows:
            row.setdefault(name, None)
    return rows


def _previous(
    session: Session, notification: Notification, recipient_ids: list[str], since: Any
) -> dict[str, list[policy.Previous]]:
    found: dict[str, list[policy.Previous]] = defaultdict(list)
    if not recipient_ids:
        return found
    for delivery_id, rid, state in session.exec(
        select(Delivery.id, Delivery.recipient_id, Delivery.status).where(
            col(Delivery.collapse_key) == notification.collapse_key,
            col(Delivery.recipient_id).in_(recipient_ids),
            col(Delivery.notification_id) != notification.id,
            col(Delivery.created_at) >= since,
        )
    ):
        assert delivery_id is not None
        found[rid].append(policy.Previous(delivery_id, DeliveryStatus(state)))
    return found
