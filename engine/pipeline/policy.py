"""The rules: who gets a notification, on which channels, and when. Pure functions.

The chunk planner (`engine.pipeline.planning`) loads everything in bulk, asks these
functions, and writes their answers in bulk; nothing here touches Redis or SQL.
"""

from __future__ import annotations

import functools
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta

from engine.store.models import OPTIONAL_KINDS, Category
from engine.store.states import PENDING, WENT_OUT, DeliveryStatus, Reason
from preferences import wallclock
from preferences.model import Cap, EffectivePreferences

INBOX = "inapp"
# The optional kinds: a pause drops them and the recipient's global cap counts them,
# unless a category says otherwise.
# During a pause service notices wait for its end; the optional kinds are dropped, and
# the essentials (transactional kinds, required categories) are not paused at all.
HELD_DURING_PAUSE = frozenset({"service"})


@dataclass(frozen=True)
class Rules:
    """What a category says about routing, caps and collapse."""

    key: str
    kind: str
    priority: str
    channels: tuple[str, ...]
    required: bool = False
    caps: tuple[Cap, ...] = ()
    # More caps by the recipient's activity (`active`, `sleeping`, `churned`).
    caps_by_activity: tuple[tuple[str, tuple[Cap, ...]], ...] = ()
    over_cap: str = "drop"
    collapse_window: int | None = None
    escalate_after: int | None = None
    global_cap: bool | None = None

    @property
    def essential(self) -> bool:
        """Required categories and transactional kinds: a pause never holds them."""
        return self.required or self.kind == "transactional"

    def activity_caps(self, activity: str | None) -> tuple[Cap, ...]:
        """The caps for a recipient of this activity, on top of `caps`."""
        return next((caps for name, caps in self.caps_by_activity if name == activity), ())

    @property
    def under_global_cap(self) -> bool:
        """Whether the recipient's global cap counts and limits this category: as the
        category says, else only the optional kinds (promotional, social)."""
        if self.global_cap is not None:
            return self.global_cap
        return self.kind in OPTIONAL_KINDS


@dataclass(frozen=True)
class Request:
    """What a notification asks for."""

    channels: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    collapse_key: str | None = None


@dataclass(frozen=True)
class Decision:
    """One channel's fate for one recipient: queued, scheduled (with due time) or suppressed."""

    channel: str
    status: DeliveryStatus
    reason: Reason | None = None
    due_at: datetime | None = None


@dataclass(frozen=True)
class Previous:
    """An earlier delivery with the same collapse key to the same recipient."""

    id: int
    status: DeliveryStatus


def candidate_channels(rules: Rules, request: Request) -> list[str]:
    """The category's channels, in order, narrowed to the request's subset."""
    return [c for c in rules.channels if request.channels is None or c in request.channels]


def decide(
    rules: Rules,
    request: Request,
    prefs: EffectivePreferences,
    addressable: Iterable[str],
    at: datetime,
) -> list[Decision]:
    """Opt-ins, addresses, priority routing, pause and quiet hours for one recipient."""
    channels = candidate_channels(rules, request)
    if request.expires_at is not None and at >= request.expires_at:
        return [Decision(c, DeliveryStatus.SUPPRESSED, Reason.EXPIRED) for c in channels]
    reachable = set(addressable)
    out: list[Decision] = []
    usable: list[str] = []
    for channel in channels:
        if (refused := _refused(rules, prefs, reachable, channel)) is not None:
            out.append(refused)
        else:
            usable.append(channel)
    interrupting = [c for c in usable if c != INBOX]
    if INBOX in usable:
        out.append(Decision(INBOX, DeliveryStatus.QUEUED))
    out.extend(_route(rules, prefs, interrupting, has_inbox=INBOX in usable, at=at))
    return expire_late(out, request.expires_at)


def expire_late(decisions: Sequence[Decision], expires_at: datetime | None) -> list[Decision]:
    """A delivery held until its notification's expiry or later (quiet hours past a sale's
    start, a cap deferral past a campaign's event) is `suppressed/expired` now, never sent
    late."""
    if expires_at is None:
        return list(decisions)
    return [
        Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.EXPIRED)
        if d.status == DeliveryStatus.SCHEDULED and d.due_at is not None and d.due_at >= expires_at
        else d
        for d in decisions
    ]


def _refused(
    rules: Rules, prefs: EffectivePreferences, reachable: Container[str], channel: str
) -> Decision | None:
    """Why `channel` is not for this recipient (opted out, unsubscribed, no address)."""
    if not prefs.opted_in(rules.key, channel, required=rules.required):
        return Decision(
            channel,
            DeliveryStatus.SUPPRESSED,
            Reason.UNSUBSCRIBED if prefs.unsubscribed else Reason.OPTED_OUT,
        )
    if channel not in reachable:
        return Decision(channel, DeliveryStatus.SUPPRESSED, Reason.NO_ADDRESS)
    return None


def recheck(
    rules: Rules,
    request: Request,
    prefs: EffectivePreferences,
    addressable: Iterable[str],
    channel: str,
    at: datetime,
) -> Decision:
    """A held delivery on `channel` decided anew at `at`, by the rules `decide` applies:
    expiry, opt-outs and unsubscribe, addresses, then pause and quiet hours (`hold`).

    Returns `queued` when it may go now, `scheduled` with a new due time when a pause or
    quiet hours hold it again, or `suppressed` with the reason.
    """
    if request.expires_at is not None and at >= request.expires_at:
        return Decision(channel, DeliveryStatus.SUPPRESSED, Reason.EXPIRED)
    if (refused := _refused(rules, prefs, set(addressable), channel)) is not None:
        return refused
    (decision,) = expire_late(
        [hold(rules, prefs, Decision(channel, DeliveryStatus.QUEUED), at)], request.expires_at
    )
    return decision


def decide_many(
    rules: Rules,
    request: Request,
    recipients: Iterable[tuple[str, EffectivePreferences, tuple[str, ...]]],
    at: datetime,
) -> dict[str, list[Decision]]:
    """`decide` for many (recipient id, preferences, addressable channels), computed once
    per distinct situation.

    Recipients alike share one preferences object (`preferences.store.shared`), so
    those with the same addresses get the same decisions — the same list: a caller
    replaces a recipient's list, never changes it in place. The key is the identity of
    the preferences — all stay alive for the call, so no identity is reused — and the
    addresses.
    """
    seen: dict[tuple[int, tuple[str, ...]], list[Decision]] = {}
    out: dict[str, list[Decision]] = {}
    for rid, prefs, channels in recipients:
        key = (id(prefs), channels)
        found = seen.get(key)
        if found is None:
            found = seen[key] = decide(rules, request, prefs, channels, at)
        out[rid] = found
    return out


def _route(
    rules: Rules, prefs: EffectivePreferences, channels: list[str], *, has_inbox: bool, at: datetime
) -> list[Decision]:
    if not channels:
        return []
    if rules.priority == "critical":
        return [Decision(c, DeliveryStatus.QUEUED) for c in channels]
    if rules.priority == "low" and has_inbox:
        if prefs.digest.enabled:
            return [
                Decision(
                    channels[0],
                    DeliveryStatus.SCHEDULED,
                    Reason.DIGEST,
                    next_local(prefs, prefs.digest.at, at),
                )
            ]
        return []
    if rules.priority == "high":
        now = channels
        later: list[Decision] = []
    else:
        now = channels[:1]
        step = rules.escalate_after
        later = (
            [
                Decision(
                    c,
                    DeliveryStatus.SCHEDULED,
                    Reason.ESCALATION,
                    at + timedelta(seconds=step * (i + 1)),
                )
                for i, c in enumerate(channels[1:])
            ]
            if step
            else []
        )
    return [hold(rules, prefs, Decision(c, DeliveryStatus.QUEUED), at) for c in now] + later


def hold(rules: Rules, prefs: EffectivePreferences, decision: Decision, at: datetime) -> Decision:
    """Apply pause and quiet hours to an interrupting delivery about to go out at `at`.

    A pause holds service notices until it ends and drops the optional kinds (reason
    `paused`); essentials (required, transactional) and critical ones are not paused.
    """
    if rules.priority == "critical" or decision.channel == INBOX:
        return decision
    if not rules.essential and (paused := prefs.paused_at(at)) is not None:
        if rules.kind in HELD_DURING_PAUSE:
            return replace(
                decision, status=DeliveryStatus.SCHEDULED, reason=Reason.PAUSED, due_at=paused
            )
        return replace(
            decision, status=DeliveryStatus.SUPPRESSED, reason=Reason.PAUSED, due_at=None
        )
    if (quiet_end := prefs.quiet_hours.ends_at(at)) is not None:
        return replace(
            decision, status=DeliveryStatus.SCHEDULED, reason=Reason.QUIET_HOURS, due_at=quiet_end
        )
    return decision


# What `send_at: "best"` moves to the best hour: what would go now, and what only the
# recipient's own clock holds (quiet hours, a pause); escalations and digests keep theirs.
_BEST_TIME_MOVES = frozenset({Reason.QUIET_HOURS, Reason.PAUSED})


def at_best_time(
    rules: Rules,
    prefs: EffectivePreferences,
    decisions: Sequence[Decision],
    best: datetime | None,
    at: datetime,
    expires_at: datetime | None = None,
) -> list[Decision]:
    """`send_at: "best"` for one recipient whose best hour next starts at `best` (None:
    it is that hour now, at `at`).

    What would go now, or is held only by quiet hours or a pause, waits for the best
    hour; quiet hours (or a pause) still on then make it later, never earlier, and all
    those channels wait together (`scheduled/best_time`), the inbox copy with its email,
    so the recipient gets one moment; an escalation waits its `escalate_after` from that
    moment, not from now. Held until the expiry or later is `suppressed/expired`.
    Released, each is decided anew (`recheck`).
    """
    moving = [
        d
        for d in decisions
        if d.status == DeliveryStatus.QUEUED
        or (d.status == DeliveryStatus.SCHEDULED and d.reason in _BEST_TIME_MOVES)
    ]
    if not moving:
        return list(decisions)
    due = best or at
    for _ in range(8):  # quiet hours ending in a pause, or the reverse: a few rounds at most
        later = [
            held.due_at
            for d in moving
            if (held := hold(rules, prefs, Decision(d.channel, DeliveryStatus.QUEUED), due)).due_at
            is not None
            and held.due_at > due
        ]
        if not later:
            break
        due = max(later)
    if due == at:
        return list(decisions)
    moved = {d.channel for d in moving}
    # An escalation counts its wait from the first channel's send: that moved to `due`.
    late = due - at
    return expire_late(
        [
            Decision(d.channel, DeliveryStatus.SCHEDULED, Reason.BEST_TIME, due)
            if d.channel in moved
            else replace(d, due_at=d.due_at + late)
            if d.reason == Reason.ESCALATION and d.due_at is not None
            else d
            for d in decisions
        ],
        expires_at,
    )


def next_local(prefs: EffectivePreferences, at_time: time, at: datetime) -> datetime:
    """The next moment it is `at_time` in the recipient's time zone, after `at` (the first
    occurrence of a repeated time; the end of the gap for a skipped one)."""
    zone = prefs.quiet_hours.timezone
    day = wallclock.local_date(at, zone)
    candidate = wallclock.earliest(day, at_time, zone)
    while candidate <= at:
        day += timedelta(days=1)
        candidate = wallclock.earliest(day, at_time, zone)
    return candidate.astimezone(at.tzinfo)


def collapse(
    decisions: Sequence[Decision], previous: Sequence[Previous]
) -> tuple[list[Decision], list[int]]:
    """Apply a collapse key: a sent predecessor makes this a duplicate; pending ones are replaced.

    Returns the decisions and the ids of earlier pending deliveries to mark `collapsed`.
    """
    if any(p.status in WENT_OUT for p in previous):
        return [
            d
            if d.status == DeliveryStatus.SUPPRESSED
            else Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.DUPLICATE)
            for d in decisions
        ], []
    return list(decisions), [p.id for p in previous if p.status in PENDING]


def capped_scope(rules: Rules) -> bool:
    """Whether a category's notifications count against caps at all."""
    return rules.priority != "critical"


def cap_limits(
    rules: Rules, prefs: EffectivePreferences, activity: str | None = None
) -> list[tuple[str, Cap]]:
    """Every cap that applies, each with the name of the counter it draws on.

    The category's own caps always apply, with those it sets for the recipient's
    `activity` (`active`, `sleeping`, `churned`: the playbook's "active users one or two
    promotions a week, churned ones a win-back a month"); a required category is exempt from the
    recipient's caps and the global cap, so an order receipt is never held back. The
    global cap applies only to categories `Rules.under_global_cap` (by default the
    optional kinds), so a marketing cap never holds a transactional message.
    """
    if not capped_scope(rules):
        return []
    own = (*rules.caps, *rules.activity_caps(activity))
    limits = [(f"c:{rules.key}", cap) for cap in own]
    if not rules.required:
        limits += [(f"r:{rules.key}", cap) for cap in prefs.category(rules.key).caps]
        if rules.under_global_cap:
            limits += [("g", cap) for cap in prefs.caps]
    return limits


def counts_against_caps(decisions: Sequence[Decision]) -> bool:
    """A notification counts once per recipient, when the first of its deliveries goes
    out: at planning if any goes now, else when a held one is released."""
    return any(d.status == DeliveryStatus.QUEUED for d in decisions)


def over_cap(rules: Rules, decisions: Sequence[Decision], resets_at: datetime) -> list[Decision]:
    """Drop or defer what a cap refused, as the category says."""
    out = []
    for d in decisions:
        if d.status not in (DeliveryStatus.QUEUED, DeliveryStatus.SCHEDULED):
            out.append(d)
        elif rules.over_cap == "defer":
            due = max(resets_at, d.due_at) if d.due_at else resets_at
            # a digest's copy stays one of the digest, only later
            reason = Reason.DIGEST if d.reason == Reason.DIGEST else Reason.CAPPED
            out.append(Decision(d.channel, DeliveryStatus.SCHEDULED, reason, due))
        else:
            out.append(Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.CAPPED))
    return out


DAY = 86400
WEEK = 7 * DAY


@functools.lru_cache(maxsize=4096)
def cap_window(cap: Cap, zone: str, at: datetime) -> tuple[datetime, bool]:
    """Where the window a cap counts in at `at` begins, and whether that instant is in it.

    Caps of whole weeks count from local Monday 00:00 (the N-th Monday back for N weeks),
    caps of whole days from local midnight (N-1 days back), in the recipient's zone
    `zone`: a daylight-saving day is 23 or 25 hours long. Shorter caps hold for any window
    of their length, ending now: the window is (at - per, at]. A chunk asks the same
    question for thousands of recipients, hence the cache.
    """
    if cap.per % DAY:
        return at - timedelta(seconds=cap.per), False
    today = wallclock.local_date(at, zone)
    if cap.per % WEEK == 0:
        first = today - timedelta(days=today.weekday() + WEEK // DAY * (cap.per // WEEK - 1))
    else:
        first = today - timedelta(days=cap.per // DAY - 1)
    return wallclock.earliest(first, time(0), zone), True


def cap_frees_at(cap: Cap, zone: str, counted_at: datetime) -> datetime:
    """When a notification counted at `counted_at` leaves the cap's window: `per` later for
    a sliding window, else the local midnight (of a Monday, for weeks) ending its days."""
    if cap.per % DAY:
        return counted_at + timedelta(seconds=cap.per)
    day = wallclock.local_date(counted_at, zone)
    if cap.per % WEEK == 0:
        day -= timedelta(days=day.weekday())
    return wallclock.earliest(day + timedelta(days=cap.per // DAY), time(0), zone)


def release_collapse(rows: Sequence[tuple[int, str, str, str | None]]) -> set[int]:
    """Of deferred deliveries released together, which to suppress as `collapsed`.

    `rows` are (id, recipient, channel, collapse group) in id order; in each group
    only the newest goes out, so an 8:00 release is one message, not a burst.
    """
    newest: dict[tuple[str, str, str], int] = {}
    for rid, recipient, channel, group in rows:
        if group is not None:
            newest[(recipient, channel, group)] = rid
    keep = set(newest.values())
    return {rid for rid, _, _, group in rows if group is not None and rid not in keep}


def rules_of(category: Category) -> Rules:
    """Rules from a `Category` row."""
    return Rules(
        key=category.key,
        kind=category.kind,
        priority=category.priority,
        channels=tuple(category.channels),
        required=category.required,
        caps=tuple(Cap(int(c["count"]), int(c["per"])) for c in category.caps),
        caps_by_activity=tuple(
            (name, tuple(Cap(int(c["count"]), int(c["per"])) for c in caps))
            for name, caps in sorted((category.caps_by_activity or {}).items())
        ),
        over_cap=category.over_cap,
        collapse_window=category.collapse_window,
        escalate_after=category.escalate_after,
        global_cap=category.global_cap,
    )
