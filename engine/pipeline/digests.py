"""Digests: a recipient with digest on gets their held `low` notifications as ONE message
per channel at their chosen local time, listing what is still unread in the inbox.

Planning holds each `low` notification's interrupting copy as `scheduled/digest` until
the recipient's digest time (`engine.pipeline.policy`). When that time comes the
scheduler releases a recipient's held copies together, in one transaction:

1. it claims every due copy of the recipient (a conditional UPDATE: a second scheduler
   finds none of them) and decides each anew like any held delivery (opt-outs,
   unsubscribe, pause, quiet hours, expiry, erasure); quiet hours or a pause move the
   whole digest, never single items;
2. copies whose inbox copy was already read are `suppressed/seen_elsewhere`; when nothing
   is left, nothing is sent;
3. it records the digest (`Digest`), at most one per recipient, channel and digest day:
   the unique index decides between releases that race, and the loser's copies wait for
   the next digest time instead of making a second message;
4. the newest copy carries the digest (rendered in the sandbox from the digest template
   for the reader's locale: the newest copy's category's for the channel if it has one,
   else the built-in one; count, titles, links to the inbox) and goes to a deliver job; the other
   copies wait on it and end as it ends (`settle`): `sent` when it was sent, `failed` or
   `suppressed` with its error or reason.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, update
from sqlmodel import Session, col, select

from engine.pipeline import policy, redecide
from engine.pipeline.content import reader
from engine.pipeline.planning import enqueue_deliveries, page_links
from engine.pipeline.templates import RenderError, pick_locale, render
from engine.store import bulk
from engine.store.bulk import EventRow
from engine.store.models import Delivery, Digest, Notification
from engine.store.states import SEEN, DeliveryStatus, EventStatus, Reason
from engine.worker.runtime import Runtime
from preferences import wallclock
from preferences.model import EffectivePreferences

log = logging.getLogger("tidings.digests")
BATCH = 500
REASON = Reason.DIGEST
WENT_OUT = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.OPENED,
        DeliveryStatus.READ,
        DeliveryStatus.CLICKED,
        DeliveryStatus.CONVERTED,
    }
)
WAITING = frozenset({DeliveryStatus.SCHEDULED, DeliveryStatus.QUEUED, DeliveryStatus.SENDING})

# The digest message per locale; `count`, `items` ({title, url, category}), `inbox_url` and
# `recipient` (as in category templates) are what it may use.
TEMPLATES: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your digest: {{ count }} new {{ 'message' if count == 1 else 'messages' }}",
        "body": (
            "{% for item in items %}- {{ item.title }}\n  {{ item.url }}\n{% endfor %}"
            "All of them are in your inbox: {{ inbox_url }}"
        ),
        "html": (
            "<p>{{ count }} new {{ 'message' if count == 1 else 'messages' }} since your"
            ' last digest:</p><ul>{% for item in items %}<li><a href="{{ item.url }}">'
            "{{ item.title }}</a></li>{% endfor %}</ul>"
            '<p><a href="{{ inbox_url }}">Open your inbox</a></p>'
        ),
    },
    "zh-CN": {
        "title": "您的消息摘要：{{ count }} 条新消息",
        "body": (
            "{% for item in items %}- {{ item.title }}\n  {{ item.url }}\n{% endfor %}"
            "在消息中心查看全部：{{ inbox_url }}"
        ),
        "html": (
            "<p>自上次摘要以来有 {{ count }} 条新消息：</p><ul>{% for item in items %}"
            '<li><a href="{{ item.url }}">{{ item.title }}</a></li>{% endfor %}</ul>'
            '<p><a href="{{ inbox_url }}">打开消息中心</a></p>'
        ),
    },
}


def period(prefs: EffectivePreferences, at: datetime) -> str:
    """The digest day `at` falls in for this recipient: the local date on which their
    digest time last came (`2026-11-30` from 20:00 that day until 20:00 the next)."""
    zone = prefs.quiet_hours.timezone
    local = at.astimezone(wallclock.zone(zone)).replace(tzinfo=None)
    opened = local - timedelta(hours=prefs.digest.at.hour, minutes=prefs.digest.at.minute)
    return opened.date().isoformat()


def compose(
    items: Sequence[dict[str, str]],
    inbox_url: str,
    recipient: dict[str, Any],
    locale: str | None,
    own: Mapping[str, Mapping[str, str]] | None = None,
    default: str = "en",
) -> tuple[str, dict[str, str]]:
    """The digest in the reader's locale: (locale, {title, body, html}), from `own`
    templates (per locale: a category's for the channel) where they have the locale
    chosen, else the built-in `TEMPLATES`.

    Raises `RenderError` when a template fails (the digest's copies then fail with it).
    """
    templates = {**TEMPLATES, **(own or {})}
    chosen = pick_locale(templates, locale, default if default in templates else "en") or "en"
    context = {
        "count": len(items),
        "items": list(items),
        "inbox_url": inbox_url,
        "recipient": recipient,
    }
    return chosen, render(templates[chosen], context)


def release(rt: Runtime, at: datetime) -> int:
    """Turn the due digest copies of up to `BATCH` recipients into one message per
    recipient and channel; returns how many digests were handed to deliver jobs."""
    with rt.db.session() as session:
        due = and_(
            col(Delivery.status) == DeliveryStatus.SCHEDULED,
            col(Delivery.reason) == REASON,
            col(Delivery.due_at) <= at,
        )
        who = list(session.exec(select(Delivery.recipient_id).where(due).distinct().limit(BATCH)))
        if not who:
            return 0
        # Claimed: no due time while this transaction decides them.
        claimed = session.execute(
            update(Delivery)
            .where(due, col(Delivery.recipient_id).in_(who))
            .values(due_at=None, updated_at=at)
            .returning(
                col(Delivery.id),
                col(Delivery.notification_id),
                col(Delivery.recipient_id),
                col(Delivery.channel),
                col(Delivery.category),
            )
        ).all()
        carriers = _decide(rt, session, [redecide.Held(*row) for row in claimed], at)
        queues = {
            n.id: n.queue
            for n in session.exec(
                select(Notification).where(col(Notification.id).in_({n for _, _, n in carriers}))
            )
        }
    by_queue: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for delivery_id, channel, notification_id in carriers:
        by_queue[queues.get(notification_id, "normal")].append((delivery_id, channel))
    for queue, rows in by_queue.items():
        enqueue_deliveries(rt, rows, queue)
    return len(carriers)


def _decide(
    rt: Runtime, session: Session, held: list[redecide.Held], at: datetime
) -> list[tuple[int, str, int]]:
    """Decide claimed copies and write the digests; returns the carriers to send."""
    situation = redecide.load(session, rt.settings, held)
    fates = redecide.decide(situation, held, at)
    inbox = _inbox_copies(session, held)
    suppress: dict[Reason, list[int]] = defaultdict(list)
    later: dict[datetime, list[int]] = defaultdict(list)
    going: dict[tuple[str, str], list[redecide.Held]] = defaultdict(list)
    for h in held:
        fate = fates[h.id]
        copy = inbox.get((h.notification_id, h.recipient_id))
        if fate.status == DeliveryStatus.SUPPRESSED and fate.reason is not None:
            suppress[fate.reason].append(h.id)
        elif fate.status == DeliveryStatus.SCHEDULED and fate.due_at is not None:
            later[fate.due_at].append(h.id)  # the whole digest waits (quiet hours, a pause)
        elif copy is not None and (copy.read_at is not None or copy.status in SEEN):
            suppress[Reason.SEEN_ELSEWHERE].append(h.id)
        else:
            going[(h.recipient_id, h.channel)].append(h)
    events: list[EventRow] = []
    carriers: list[tuple[int, str, int]] = []
    for (rid, channel), items in going.items():
        prefs = situation.prefs[rid]
        made = bulk.insert_ignore(
            session,
            Digest,
            [
                {
                    "recipient_id": rid,
                    "channel": channel,
                    "period": period(prefs, at),
                    "items": len(items),
                    "created_at": at,
                }
            ],
            conflict=("recipient_id", "channel", "period"),
            returning=("id",),
        )
        if not made:  # this digest day's message exists: the next digest takes these
            later[policy.next_local(prefs, prefs.digest.at, at)] += [h.id for h in items]
            continue
        digest_id = int(made[0].id)
        newest = max(items, key=lambda h: h.id)
        listed = sorted(items, key=lambda h: h.id, reverse=True)
        recipient = situation.recipients[rid]
        category = situation.categories.get(newest.category)
        assert category is not None  # a missing category is left `queued` by redecide
        inbox_url = page_links(rt, recipient, category)["inbox"]
        entries = []
        for h in listed:
            copy = inbox.get((h.notification_id, h.recipient_id))
            title = (copy.title if copy is not None else None) or h.category
            anchor = f"#m-{copy.id}" if copy is not None else ""
            entries.append({"title": title, "url": inbox_url + anchor, "category": h.category})
        values: dict[str, Any] = {"carrier_id": newest.id}
        try:
            locale, copy_out = compose(
                entries,
                inbox_url,
                reader(recipient),
                recipient.locale,
                (category.digest_templates or {}).get(channel),
                category.default_locale,
            )
            values.update(
                locale=locale,
                title=copy_out.get("title"),
                body=copy_out.get("body"),
                html=copy_out.get("html"),
                action_url=inbox_url,
            )
        except RenderError as exc:
            log.error("digest failed to render", extra={"digest_id": digest_id, "error": str(exc)})
        session.execute(update(Digest).where(col(Digest.id) == digest_id).values(**values))
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_([h.id for h in items]))
            .values(digest_id=digest_id, updated_at=at)
        )
        session.execute(
            update(Delivery)
            .where(col(Delivery.id) == newest.id)
            .values(status=DeliveryStatus.QUEUED, reason=None, updated_at=at)
        )
        detail = f"digest {digest_id} of {len(items)}"
        events.append(
            {"delivery_id": newest.id, "status": EventStatus.QUEUED, "detail": detail, "at": at}
        )
        carriers.append((newest.id, newest.channel, newest.notification_id))
    for reason, ids in suppress.items():
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids))
            .values(status=DeliveryStatus.SUPPRESSED, reason=reason, updated_at=at)
        )
        events += [
            {"delivery_id": i, "status": EventStatus.SUPPRESSED, "reason": reason, "at": at}
            for i in ids
        ]
    for until, ids in later.items():
        session.execute(
            update(Delivery).where(col(Delivery.id).in_(ids)).values(due_at=until, updated_at=at)
        )
        events += [
            {"delivery_id": i, "status": EventStatus.SCHEDULED, "reason": REASON, "at": at}
            for i in ids
        ]
    bulk.add_events(session, events)
    return carriers


def _inbox_copies(session: Session, held: Sequence[redecide.Held]) -> dict[tuple[int, str], Any]:
    """The inbox copy of each held copy's notification, by (notification, recipient)."""
    if not held:
        return {}
    pairs = {(h.notification_id, h.recipient_id) for h in held}
    rows = bulk.read(
        session,
        Delivery,
        col(Delivery.channel) == policy.INBOX,
        col(Delivery.notification_id).in_({n for n, _ in pairs}),
        col(Delivery.recipient_id).in_({r for _, r in pairs}),
    )
    return {(r.notification_id, r.recipient_id): r for r in rows}


def settle(rt: Runtime, at: datetime) -> int:
    """The copies a digest lists end as the copy that carried it ended: `sent` when it went
    out, `failed` with its error, `suppressed` with its reason. Returns how many ended."""
    with rt.db.session() as session:
        waiting = list(
            session.exec(
                select(Delivery.id, Delivery.digest_id)
                .where(
                    col(Delivery.status) == DeliveryStatus.SCHEDULED,
                    col(Delivery.reason) == REASON,
                    col(Delivery.due_at).is_(None),
                    col(Delivery.digest_id).is_not(None),
                )
                .limit(BATCH * 10)
            )
        )
        if not waiting:
            return 0
        digests = {d for _, d in waiting}
        carriers = {
            digest_id: carrier
            for digest_id, carrier in session.exec(
                select(Digest.id, Digest.carrier_id).where(col(Digest.id).in_(digests))
            )
        }
        ends = {
            d.id: d
            for d in bulk.read(
                session, Delivery, col(Delivery.id).in_({c for c in carriers.values() if c})
            )
        }
        ended = 0
        events: list[EventRow] = []
        for digest_id in digests:
            carrier = ends.get(carriers.get(digest_id) or 0)
            if carrier is None or carrier.status in WAITING:
                continue
            went = carrier.status in WENT_OUT
            status = DeliveryStatus.SENT if went else DeliveryStatus(carrier.status)
            reason = None if went or carrier.reason is None else Reason(carrier.reason)
            done = session.execute(
                update(Delivery)
                .where(
                    col(Delivery.digest_id) == digest_id,
                    col(Delivery.status) == DeliveryStatus.SCHEDULED,
                    col(Delivery.due_at).is_(None),
                )
                .values(
                    status=status,
                    reason=reason,
                    error=carrier.error,
                    provider_id=carrier.provider_id,
                    updated_at=at,
                )
                .returning(col(Delivery.id))
            ).all()
            detail = f"in digest {digest_id}" if went else carrier.error
            events += [
                {
                    "delivery_id": row[0],
                    "status": EventStatus(status),
                    "reason": reason,
                    "detail": detail,
                    "at": at,
                }
                for row in done
            ]
            ended += len(done)
        bulk.add_events(session, events)
    return ended
