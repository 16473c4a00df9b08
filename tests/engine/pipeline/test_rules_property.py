"""The rules as properties: Hypothesis generates categories, recipients, their
preferences and time zones, a starting clock and a story (sends, preference changes,
time passing); the real planning, release and sending path runs it on SQLite and Redis,
webhooks going to a real HTTP receiver, the clock moved with time-machine. Each
invariant is computed here from the generated inputs alone, never by the product's
own rules:

- nobody outside a notification's audience gets it;
- nobody gets what they had opted out of (unsubscribe, a category or channel switched
  off) at the moment it is sent, unless the category is required;
- no interrupting, non-critical message is sent while the recipient's wall clock is
  inside their quiet hours, nor an optional one while they paused;
- no expired notification is sent;
- no cap is exceeded in any of its windows (any window of its length for caps of
  minutes and hours, the recipient's calendar days and Monday weeks for longer ones);
- every delivery of a critical or required category ends sent, unless it expired, had no
  address, or (critical but optional) was opted out of;
- the receiver got exactly the webhooks SQL says were sent.

A second story sends `send_at: "best"` to readers with a learned best hour, time zones
and quiet hours, on SQLite and PostgreSQL: nothing is due before the best hour's next
start (or the latest time), nothing interrupting is due inside quiet hours, and all
channels of one reader share one due time.

`TIDINGS_PROPERTY_EXAMPLES` sets how many stories to try (15 by default, to keep the suite
quick; a few hundred for a deeper search).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, or_, text
from sqlmodel import col, select

from engine.catalog import categories as category_defs
from engine.catalog import recipients
from engine.pipeline import accept, delivery, planning, scheduler
from engine.schemas.catalog import CategoryIn, RecipientIn
from engine.schemas.notifications import NotificationIn
from engine.schemas.preferences import PreferencesIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import (
    Category,
    Delivery,
    DeliveryEvent,
    Notification,
    PlanChunk,
    Preference,
    Recipient,
)
from engine.store.states import HOLDS, SUPPRESSIONS, DeliveryStatus, EventStatus, Reason
from engine.timeutil import aware
from engine.worker.broker import make_broker
from engine.worker.runtime import Runtime
from preferences import store
from tests.conftest import COUNTERS_DB, REDIS_PORT
from tests.support import Sink

ZONES = (
    "UTC",
    "America/New_York",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Shanghai",
    "Australia/Sydney",
)
DAY = 86400
WEEK = 7 * DAY
DEFAULT_GLOBAL_CAP = (5, DAY)
OPTIONAL_KINDS = ("promotional", "social")
# A few instants around 2026's daylight-saving changes, to start stories near them.
NEAR_DST = tuple(
    datetime.fromisoformat(s).replace(tzinfo=UTC)
    for s in (
        "2026-03-08T05:30",
        "2026-03-29T00:30",
        "2026-04-04T15:30",
        "2026-10-25T00:30",
        "2026-11-01T05:30",
        "2026-11-01T08:30",
    )
)


@dataclass(frozen=True)
class Cat:
    key: str
    kind: str
    priority: str
    required: bool
    caps: tuple[tuple[int, int], ...]
    over_cap: str
    global_cap: bool | None
    channels: tuple[str, ...]

    @property
    def essential(self) -> bool:
        return self.required or self.kind == "transactional"

    @property
    def under_global_cap(self) -> bool:
        return self.global_cap if self.global_cap is not None else self.kind in OPTIONAL_KINDS


@dataclass
class Person:
    rid: str
    zone: str
    webhook: bool
    caps: tuple[tuple[int, int], ...] | None  # None: the platform default
    category_caps: dict[str, tuple[tuple[int, int], ...]]
    quiet: tuple[time, time] | None
    unsubscribed: bool = False
    webhook_off: bool = False
    muted: set[str] = field(default_factory=set)
    paused_until: datetime | None = None


@st.composite
def categories(draw: st.DrawFn) -> list[Cat]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("transactional", "service", "promotional", "social")))
        required = kind in ("transactional", "service") and draw(st.booleans())
        caps = (
            ()
            if required
            else tuple(
                draw(
                    st.lists(
                        st.tuples(st.integers(1, 2), st.sampled_from((1800, 3600, DAY, WEEK))),
                        max_size=1,
                    )
                )
            )
        )
        out.append(
            Cat(
                key=f"cat{i}",
                kind=kind,
                priority=draw(st.sampled_from(("critical", "high", "normal", "low"))),
                required=required,
                caps=caps,
                over_cap=draw(st.sampled_from(("drop", "defer"))),
                global_cap=draw(st.sampled_from((None, True, False))),
                channels=draw(st.sampled_from((("inapp", "webhook"), ("webhook",)))),
            )
        )
    return out


TIMES = [time(h, m) for h in range(24) for m in (0, 30)]
CAPS = st.tuples(st.sampled_from((1, 1, 2)), st.sampled_from((3600, 2 * 3600, DAY, 2 * DAY, WEEK)))


@st.composite
def people(draw: st.DrawFn, cats: list[Cat]) -> list[Person]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        quiet = None
        if draw(st.booleans()):
            start, end = draw(st.lists(st.sampled_from(TIMES), min_size=2, max_size=2, unique=True))
            quiet = (start, end)
        capped = draw(st.lists(st.sampled_from([c.key for c in cats]), max_size=1))
        out.append(
            Person(
                rid=f"p{i}",
                zone=draw(st.sampled_from(ZONES)),
                webhook=draw(st.integers(0, 4)) > 0,
                caps=draw(st.one_of(st.none(), st.lists(CAPS, max_size=2).map(tuple))),
                category_caps={key: (draw(CAPS),) for key in capped},
                quiet=quiet,
            )
        )
    return out


CHANGES = (
    "unsubscribe",
    "resubscribe",
    "mute",
    "unmute",
    "webhook_off",
    "webhook_on",
    "pause",
    "unpause",
    "quiet_off",
)


def steps(cats: int, persons: int) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    send = st.tuples(
        st.just("send"),
        st.integers(0, cats - 1),
        st.sets(st.integers(0, persons - 1), min_size=1),
        st.one_of(st.none(), st.sampled_from((20, 90, 600))),
    )
    change = st.tuples(
        st.just("change"),
        st.integers(0, persons - 1),
        st.sampled_from(CHANGES),
        st.integers(0, cats - 1),
        st.sampled_from((1, 7, 30)),
    )
    wait = st.tuples(st.just("wait"), st.sampled_from((1, 29, 31, 59, 61, 119, 480, 1440)))
    return st.lists(st.one_of(send, send, send, change, wait), min_size=1, max_size=10)


@st.composite
def stories(draw: st.DrawFn) -> tuple[list[Cat], list[Person], datetime, list[tuple[Any, ...]]]:
    cats = draw(categories())
    persons = draw(people(cats))
    anywhere = st.datetimes(min_value=datetime(2026, 1, 5), max_value=datetime(2026, 12, 20)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
    )
    near = st.tuples(st.sampled_from(NEAR_DST), st.integers(-180, 180)).map(
        lambda p: p[0] + timedelta(minutes=p[1])
    )
    start = draw(st.one_of(anywhere, near))
    return cats, persons, start, draw(steps(len(cats), len(persons)))


class Story:
    """Runs one generated story through the engine and checks every send as it happens."""

    def __init__(self, rt: Runtime, db: Database, sink_url: str) -> None:
        self.rt = rt
        self.db = db
        self.sink_url = sink_url
        self.cats: dict[str, Cat] = {}
        self.people: dict[str, Person] = {}
        self.audience: dict[int, set[str]] = {}
        self.category_of: dict[int, str] = {}
        self.expires: dict[int, datetime | None] = {}
        self.first_out: dict[tuple[int, str], datetime] = {}
        self.last_event = 0
        self.clock = datetime(2026, 1, 1, tzinfo=UTC)

    # -- driving the engine ------------------------------------------------------------

    def setup(self, cats: list[Cat], persons: list[Person]) -> None:
        with self.db.session() as session:
            for c in cats:
                self.cats[c.key] = c
                spec = {
                    "name": c.key,
                    "kind": c.kind,
                    "priority": c.priority,
                    "required": c.required,
                    "channels": list(c.channels),
                    "caps": [{"count": n, "per": per} for n, per in c.caps],
                    "over_cap": c.over_cap,
                    "global_cap": c.global_cap,
                }
                category_defs.upsert(session, c.key, CategoryIn.model_validate(spec))
        with self.db.session() as session:
            for p in persons:
                self.people[p.rid] = p
                url = f"{self.sink_url}/hook/{p.rid}" if p.webhook else None
                recipients.upsert(session, p.rid, RecipientIn(timezone=p.zone, webhook_url=url))
        for p in persons:
            prefs: dict[str, Any] = {
                "quiet_hours": {"enabled": False}
                if p.quiet is None
                else {
                    "enabled": True,
                    "start": p.quiet[0].strftime("%H:%M"),
                    "end": p.quiet[1].strftime("%H:%M"),
                    "timezone": p.zone,
                },
                "categories": {
                    key: {"caps": [{"count": n, "per": per} for n, per in caps]}
                    for key, caps in p.category_caps.items()
                },
            }
            if p.caps is not None:
                prefs["caps"] = [{"count": n, "per": per} for n, per in p.caps]
            self.prefer(p.rid, prefs)

    def prefer(self, rid: str, changes: dict[str, Any]) -> None:
        with self.db.session() as session:
            store.update(
                session,
                rid,
                PreferencesIn.model_validate(changes),
                categories=store.load_categories(session),
            )

    def act(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "wait":
            self.advance(self.clock + timedelta(minutes=step[1]))
        elif kind == "send":
            _, index, who, expires_in = step
            cat = list(self.cats.values())[index]
            rids = sorted(list(self.people)[i] for i in who)
            expires = self.clock + timedelta(minutes=expires_in) if expires_in else None
            with time_machine.travel(self.clock, tick=False):
                with self.rt.db.session() as session:
                    spec = NotificationIn(
                        category=cat.key,
                        to=rids,
                        content={"title": "hello", "body": "there"},
                        expires_at=expires,
                    )
                    nid = accept.accept(session, spec, settings=self.rt.settings).id
                self.audience[nid] = set(rids)
                self.category_of[nid] = cat.key
                self.expires[nid] = expires
                planning.plan(self.rt, nid)
        else:
            self.change(step)
        self.run()

    def change(self, step: tuple[Any, ...]) -> None:
        _, index, what, cat_index, amount = step
        p = list(self.people.values())[index]
        key = list(self.cats)[cat_index]
        cat = self.cats[key]
        if what in ("mute", "unmute") and cat.required:
            return  # a required category cannot be switched off
        if what == "unsubscribe":
            p.unsubscribed = True
            changes: dict[str, Any] = {"unsubscribed": True}
        elif what == "resubscribe":
            p.unsubscribed = False
            changes = {"unsubscribed": False}
        elif what in ("mute", "unmute"):
            on = what == "unmute"
            (p.muted.discard if on else p.muted.add)(key)
            changes = {"categories": {key: {"enabled": on}}}
        elif what in ("webhook_off", "webhook_on"):
            p.webhook_off = what == "webhook_off"
            changes = {"channels": {"webhook": not p.webhook_off}}
        elif what == "pause":
            p.paused_until = self.clock + timedelta(hours=amount)
            changes = {"paused_until": p.paused_until.isoformat()}
        elif what == "unpause":
            p.paused_until = None
            changes = {"paused_until": None}
        else:
            p.quiet = None
            changes = {"quiet_hours": {"enabled": False}}
        with time_machine.travel(self.clock, tick=False):
            self.prefer(p.rid, changes)

    def advance(self, until: datetime) -> None:
        """Let time pass as the scheduler sees it: every held delivery is released at its
        due time on the way."""
        for _ in range(100):
            with self.db.session() as session:
                due = session.exec(
                    select(Delivery.due_at)
                    .where(col(Delivery.status) == "scheduled", col(Delivery.due_at) <= until)
                    .order_by(col(Delivery.due_at))
                    .limit(1)
                ).first()
            if due is None:
                break
            self.clock = max(self.clock, due.replace(tzinfo=UTC) if due.tzinfo is None else due)
            self.run()
        self.clock = until

    def run(self) -> None:
        """What the scheduler and the workers do at this moment, until nothing is left."""
        at = self.clock
        with time_machine.travel(at, tick=False):
            for _ in range(8):
                released = scheduler.release_deliveries(self.rt, at)
                with self.db.session() as session:
                    due = session.exec(
                        select(Delivery.id, Delivery.channel).where(
                            col(Delivery.status) == "queued",
                            or_(col(Delivery.due_at).is_(None), col(Delivery.due_at) <= at),
                        )
                    ).all()
                by_channel: dict[str, list[int]] = defaultdict(list)
                for delivery_id, channel in due:
                    assert delivery_id is not None
                    by_channel[channel].append(delivery_id)
                for ids in by_channel.values():
                    delivery.deliver(self.rt, ids)
                if not released and not due:
                    break
        self.check_sends()

    # -- the invariants ------------------------------------------------------------------

    def check_sends(self) -> None:
        at = self.clock
        with self.db.session() as session:
            rows = session.exec(
                select(
                    DeliveryEvent.id,
                    DeliveryEvent.at,
                    Delivery.notification_id,
                    Delivery.recipient_id,
                    Delivery.channel,
                )
                .join(Delivery, col(Delivery.id) == col(DeliveryEvent.delivery_id))
                .where(
                    col(DeliveryEvent.id) > self.last_event,
                    col(DeliveryEvent.status).in_(("sent", "delivered")),
                )
                .order_by(col(DeliveryEvent.id))
            ).all()
        for event_id, when, nid, rid, channel in rows:
            assert event_id is not None
            self.last_event = max(self.last_event, event_id)
            sent_at = when.replace(tzinfo=UTC) if when.tzinfo is None else when
            assert sent_at == at
            self.check_send(nid, rid, channel, at)
            key = (nid, rid)
            self.first_out[key] = min(self.first_out.get(key, at), at)

    def check_send(self, nid: int, rid: str, channel: str, at: datetime) -> None:
        cat = self.cats[self.category_of[nid]]
        p = self.people[rid]
        what = f"notification {nid} ({cat}) to {p} on {channel} at {at}"
        assert rid in self.audience[nid], f"outside the audience: {what}"
        expires = self.expires[nid]
        assert expires is None or at < expires, f"expired: {what}"
        if not cat.required:
            assert not p.unsubscribed, f"unsubscribed: {what}"
            assert cat.key not in p.muted, f"category switched off: {what}"
            assert not (channel == "webhook" and p.webhook_off), f"channel switched off: {what}"
        if channel == "inapp" or cat.priority == "critical":
            return
        if p.quiet is not None:
            shown = at.astimezone(ZoneInfo(p.zone)).time()
            start, end = p.quiet
            inside = start <= shown < end if start < end else shown >= start or shown < end
            assert not inside, f"in quiet hours {start}-{end} ({shown} local): {what}"
        if not cat.essential and p.paused_until is not None:
            assert at >= p.paused_until, f"paused until {p.paused_until}: {what}"

    def check_caps(self) -> None:
        for p in self.people.values():
            for cat in self.cats.values():
                if cat.priority == "critical":
                    continue
                times = self.times(p.rid, [cat.key])
                for cap in cat.caps:
                    self.within(times, cap, p, f"{cat.key}'s own cap")
                if cat.required:
                    continue
                for cap in p.category_caps.get(cat.key, ()):
                    self.within(times, cap, p, f"{p.rid}'s cap on {cat.key}")
            counted = [
                c.key
                for c in self.cats.values()
                if c.priority != "critical" and not c.required and c.under_global_cap
            ]
            caps = p.caps if p.caps is not None else (DEFAULT_GLOBAL_CAP,)
            for cap in caps:
                self.within(self.times(p.rid, counted), cap, p, f"{p.rid}'s global cap")

    def times(self, rid: str, keys: list[str]) -> list[datetime]:
        return sorted(
            at
            for (nid, who), at in self.first_out.items()
            if who == rid and self.category_of[nid] in keys
        )

    @staticmethod
    def within(times: list[datetime], cap: tuple[int, int], p: Person, name: str) -> None:
        count, per = cap
        if per % DAY:
            for i, t in enumerate(times):
                window = [u for u in times[: i + 1] if u > t - timedelta(seconds=per)]
                assert len(window) <= count, f"{name} {cap} exceeded: {window}"
            return
        zone = ZoneInfo(p.zone)
        weeks = per % WEEK == 0

        def unit(t: datetime) -> date:
            day = t.astimezone(zone).date()
            return day - timedelta(days=day.weekday()) if weeks else day

        span = timedelta(days=7 * (per // WEEK) if weeks else per // DAY)
        step = timedelta(days=7 if weeks else 1)
        units = [unit(t) for t in times]
        for u in units:
            window = [w for w in units if u - span + step <= w <= u]
            assert len(window) <= count, f"{name} {cap} exceeded in {p.zone}: {times}"

    def check_essentials(self) -> None:
        with self.db.session() as session:
            rows = session.exec(
                select(
                    Delivery.notification_id,
                    Delivery.recipient_id,
                    Delivery.channel,
                    Delivery.status,
                    Delivery.reason,
                )
            ).all()
        for nid, rid, channel, status, reason in rows:
            cat = self.cats[self.category_of[nid]]
            if not (cat.required or cat.priority == "critical"):
                continue
            allowed = {"expired", "no_address"}
            if not cat.required:
                allowed |= {"opted_out", "unsubscribed"}
            fate = f"{cat} to {self.people[rid]} on {channel}: {status}/{reason}"
            assert status in ("sent", "delivered") or (
                status == "suppressed" and reason in allowed
            ), fate

    def check_states(self) -> None:
        """Every status and reason stored is a member of its enum, as text, and each
        reason sits beside the status it explains (a hold's beside `scheduled` with a due
        time, a suppression's beside `suppressed`)."""
        with self.db.session() as session:
            rows = session.execute(text("SELECT status, reason, due_at FROM deliveries")).all()
            events = session.execute(text("SELECT status, reason FROM delivery_events")).all()
        for status, reason, due_at in rows:
            assert status in set(DeliveryStatus), status
            if status == DeliveryStatus.SUPPRESSED:
                assert reason in SUPPRESSIONS, (status, reason)
            elif status == DeliveryStatus.SCHEDULED:
                assert reason in HOLDS and due_at is not None, (status, reason)
            else:
                assert reason is None, (status, reason)
        for status, reason in events:
            assert status in set(EventStatus), status
            assert reason is None or reason in set(Reason), reason
            if status == EventStatus.SUPPRESSED:
                assert reason in SUPPRESSIONS, (status, reason)
            if status == EventStatus.SCHEDULED:
                assert reason in HOLDS, (status, reason)

    def check_receiver(self, receiver: Sink) -> None:
        with self.db.session() as session:
            sent = {
                f"msg_{i}"
                for i in session.exec(
                    select(Delivery.id).where(
                        col(Delivery.channel) == "webhook",
                        col(Delivery.status).in_(("sent", "delivered")),
                    )
                )
            }
        with receiver.lock:
            got = [headers["webhook-id"] for _, headers, _ in receiver.requests]
        assert sorted(got) == sorted(sent)


@pytest.fixture
def rt(settings: Settings, db: Database) -> Iterator[Runtime]:
    runtime = Runtime(settings, make_broker(settings))
    yield runtime
    runtime.close()


def _reset(db: Database, rt: Runtime, receiver: Sink) -> None:
    with db.session() as session:
        for model in (
            DeliveryEvent,
            Delivery,
            PlanChunk,
            Notification,
            Preference,
            Recipient,
            Category,
        ):
            session.execute(delete(model))
    rt.counters.client.flushdb()
    redis.Redis(host="127.0.0.1", port=REDIS_PORT, db=COUNTERS_DB - 1).flushdb()
    with receiver.lock:
        receiver.requests.clear()


@settings(
    max_examples=int(os.environ.get("TIDINGS_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # two social notifications held overnight, one a day allowed: one goes at 08:00
    story=(
        [Cat("cat0", "social", "high", False, (), "drop", None, ("webhook",))],
        [Person("p0", "UTC", True, ((1, DAY),), {}, (time(22, 0), time(8, 0)))],
        datetime(2026, 6, 1, 23, 0, tzinfo=UTC),
        [("send", 0, {0}, None), ("send", 0, {0}, None), ("wait", 600)],
    )
)
@given(story=stories())
def test_every_message_obeys_the_recipients_choices_at_the_moment_it_is_sent(
    rt: Runtime,
    db: Database,
    sink: tuple[Sink, str],
    story: tuple[list[Cat], list[Person], datetime, list[tuple[Any, ...]]],
) -> None:
    receiver, url = sink
    _reset(db, rt, receiver)
    cats, persons, start, actions = story
    run = Story(rt, db, url)
    run.clock = start
    with time_machine.travel(start, tick=False):
        run.setup(cats, persons)
    for step in actions:
        run.act(step)
    run.advance(run.clock + timedelta(days=8))  # whatever was held is released or ends
    run.run()
    run.check_caps()
    run.check_essentials()
    run.check_receiver(receiver)
    run.check_states()


# -- send_at "best" ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """A recipient of a best-time send: their zone, quiet hours, and the local hour they
    have read at lately."""

    rid: str
    zone: str
    quiet: tuple[time, time] | None
    best: int
    webhook: bool


@st.composite
def best_time_cases(draw: st.DrawFn) -> tuple[Cat, list[Reader], datetime, datetime | None]:
    cat = Cat(
        key="cat0",
        kind=draw(st.sampled_from(("transactional", "service", "promotional"))),
        priority=draw(st.sampled_from(("high", "normal"))),
        required=False,
        caps=(),
        over_cap="drop",
        global_cap=None,
        channels=("inapp", "webhook"),
    )
    readers = []
    for i in range(draw(st.integers(1, 3))):
        quiet = None
        if draw(st.integers(0, 3)) > 0:
            start, end = draw(st.lists(st.sampled_from(TIMES), min_size=2, max_size=2, unique=True))
            quiet = (start, end)
        readers.append(
            Reader(
                rid=f"p{i}",
                zone=draw(st.sampled_from(ZONES)),
                quiet=quiet,
                best=draw(st.integers(0, 23)),
                webhook=draw(st.integers(0, 4)) > 0,
            )
        )
    anywhere = st.datetimes(min_value=datetime(2026, 1, 5), max_value=datetime(2026, 12, 20)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
    )
    near = st.tuples(st.sampled_from(NEAR_DST), st.integers(-180, 180)).map(
        lambda p: p[0] + timedelta(minutes=p[1])
    )
    clock = draw(st.one_of(anywhere, near))
    within = draw(st.one_of(st.none(), st.sampled_from((30, 300, 1000, 2000))))
    latest = clock + timedelta(minutes=within) if within else None
    return cat, readers, clock, latest


def _read_history(db: Database, readers: list[Reader], clock: datetime) -> None:
    """Five reads at each reader's best local hour on the days before `clock`: enough
    history for that hour to be theirs."""
    with db.session() as session:
        for r in readers:
            zone = ZoneInfo(r.zone)
            today = clock.astimezone(zone).date()
            seen = []
            for back in range(1, 10):
                local = datetime.combine(today - timedelta(days=back), time(r.best, 30), zone)
                if local.astimezone(UTC).astimezone(zone).hour == r.best:  # not in a DST gap
                    seen.append(local.astimezone(UTC))
            row = Delivery(
                notification_id=0,
                recipient_id=r.rid,
                channel="inapp",
                category="cat0",
                status=DeliveryStatus.DELIVERED,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            for at in seen[:5]:
                session.add(DeliveryEvent(delivery_id=row.id, status=EventStatus.READ, at=at))


def _best_hour_starts(r: Reader, clock: datetime) -> datetime:
    """The first moment from `clock` on that it is the reader's best hour on their wall
    clock (or the clock jumps over it, on a daylight-saving day)."""
    zone = ZoneInfo(r.zone)
    if clock.astimezone(zone).hour == r.best:
        return clock
    t = clock
    for _ in range(3 * 24 * 60):
        before = t.astimezone(zone)
        t += timedelta(minutes=1)
        shown = t.astimezone(zone)
        if shown.hour == r.best or (
            shown.date() == before.date() and before.hour < r.best < shown.hour
        ):
            return t
    raise AssertionError(f"no {r.best}:00 within three days of {clock} in {r.zone}")


def _quiet_at(quiet: tuple[time, time], zone: str, at: datetime) -> bool:
    start, end = quiet
    shown = at.astimezone(ZoneInfo(zone)).time()
    return start <= shown < end if start < end else shown >= start or shown < end


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
@settings(
    max_examples=int(os.environ.get("TIDINGS_PROPERTY_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(  # quiet hours end before the best hour: the email still waits for it
    case=(
        Cat("cat0", "promotional", "high", False, (), "drop", None, ("inapp", "webhook")),
        [Reader("p0", "UTC", (time(22, 0), time(8, 0)), 20, True)],
        datetime(2026, 6, 1, 23, 0, tzinfo=UTC),
        None,
    )
)
@example(  # the best hour falls in quiet hours: both channels wait for their end
    case=(
        Cat("cat0", "promotional", "high", False, (), "drop", None, ("inapp", "webhook")),
        [Reader("p0", "Asia/Shanghai", (time(21, 0), time(9, 0)), 7, True)],
        datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
        None,
    )
)
@given(case=best_time_cases())
def test_a_best_time_send_waits_for_the_best_hour_outside_quiet_hours_on_every_channel_at_once(
    rt: Runtime,
    db: Database,
    sink: tuple[Sink, str],
    case: tuple[Cat, list[Reader], datetime, datetime | None],
) -> None:
    receiver, url = sink
    _reset(db, rt, receiver)
    cat, readers, clock, latest = case
    run = Story(rt, db, url)
    run.clock = clock
    persons = [Person(r.rid, r.zone, r.webhook, None, {}, r.quiet) for r in readers]
    with time_machine.travel(clock, tick=False):
        run.setup([cat], persons)
    _read_history(db, readers, clock)
    rids = [r.rid for r in readers]
    with time_machine.travel(clock, tick=False):
        with rt.db.session() as session:
            spec = NotificationIn(
                category=cat.key,
                to=rids,
                content={"title": "hello", "body": "there"},
                send_at="best",
                latest_at=latest,
            )
            nid = accept.accept(session, spec, settings=rt.settings).id
        planning.plan(rt, nid)
    run.audience[nid] = set(rids)
    run.category_of[nid] = cat.key
    run.expires[nid] = None
    with db.session() as session:
        planned = session.exec(select(Delivery).where(col(Delivery.notification_id) == nid)).all()
    earliest: dict[str, datetime] = {}
    for r in readers:
        earliest[r.rid] = _best_hour_starts(r, clock)
        if latest is not None:
            earliest[r.rid] = min(earliest[r.rid], latest)
        mine = [d for d in planned if d.recipient_id == r.rid]
        what = f"{r} with {cat} at {clock} (latest {latest}): " + ", ".join(
            f"{d.channel} {d.status}/{d.reason} {d.due_at}" for d in mine
        )
        waits = {aware(d.due_at) or clock for d in mine if d.status != DeliveryStatus.SUPPRESSED}
        assert len(waits) == 1, f"channels apart: {what}"
        (due,) = waits
        assert due >= earliest[r.rid], f"before the best hour {earliest[r.rid]}: {what}"
        if r.webhook and r.quiet is not None:
            assert not _quiet_at(r.quiet, r.zone, due), f"due in quiet hours: {what}"
    run.run()
    run.advance(clock + timedelta(days=3))  # each send is checked against quiet hours
    run.run()
    for (_, rid), first in run.first_out.items():
        assert first >= earliest[rid], f"{rid} got it at {first}, before {earliest[rid]}"
    run.check_receiver(receiver)
    run.check_states()
