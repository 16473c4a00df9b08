"""Held deliveries decided anew, when they are released and again just before sending.

A delivery can wait hours or days (quiet hours, a pause, a cap deferral, a digest, an
escalation, `send_at`); meanwhile its recipient may unsubscribe, switch the category or
channel off, pause, or be erased, and the notification may expire. Its fate at planning
is therefore never final: every waiting delivery is asked the planning rules of
`engine.pipeline.policy` again against the recipient's preferences *then*, loaded in bulk for a
whole release or batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from engine.pipeline import policy
from engine.pipeline.cancel import is_cancelled
from engine.pipeline.planning import addressable
from engine.settings import Settings
from engine.store import bulk
from engine.store.models import Category, Notification, Recipient
from engine.store.states import DeliveryStatus, Reason
from engine.timeutil import aware
from preferences import store
from preferences.model import EffectivePreferences


@dataclass(frozen=True)
class Held:
    """What re-deciding needs of a delivery."""

    id: int
    notification_id: int
    recipient_id: str
    channel: str
    category: str


@dataclass
class Situation:
    """Everything the rules read for a set of deliveries, loaded in bulk."""

    notifications: Mapping[int, Notification]
    categories: Mapping[str, Category]
    recipients: Mapping[str, Recipient]
    prefs: Mapping[str, EffectivePreferences]
    # Each category's rules, built once for all its deliveries.
    _rules: dict[str, policy.Rules] = field(default_factory=dict, repr=False)

    def rules(self, delivery: Held) -> policy.Rules | None:
        found = self._rules.get(delivery.category)
        if found is None:
            category = self.categories.get(delivery.category)
            if category is None:
                return None
            found = self._rules[delivery.category] = policy.rules_of(category)
        return found


def load(
    session: Session,
    settings: Settings,
    held: Sequence[Held],
    *,
    notifications: Mapping[int, Notification] | None = None,
    categories: Mapping[str, Category] | None = None,
    recipients: Mapping[str, Recipient] | None = None,
) -> Situation:
    """Read what `decide` needs for `held` in a few queries (what the caller has already
    read is passed in)."""
    if notifications is None:
        ids = {d.notification_id for d in held}
        notifications = {
            n.id: n
            for n in session.exec(select(Notification).where(col(Notification.id).in_(ids)))
            if n.id is not None
        }
    if categories is None:
        keys = {d.category for d in held}
        categories = {
            c.key: c for c in session.exec(select(Category).where(col(Category.key).in_(keys)))
        }
    if recipients is None:
        rids = list({d.recipient_id for d in held})
        recipients = {}
        for start in range(0, len(rids), 10_000):
            chunk = rids[start : start + 10_000]
            recipients.update(
                (r.id, r) for r in bulk.read(session, Recipient, col(Recipient.id).in_(chunk))
            )
    prefs = store.load_many(session, list(recipients.values()), settings=settings)
    return Situation(notifications, categories, recipients, prefs)


def decide(situation: Situation, held: Iterable[Held], at: datetime) -> dict[int, policy.Decision]:
    """Each delivery's fate at `at`: `queued` (it may go), `scheduled` (with a new due time
    and reason: quiet hours, a pause) or `suppressed` (with the reason; `cancelled` once its
    notification was cancelled). A delivery whose
    notification or category is gone is left `queued` for sending to fail it with why."""
    out: dict[int, policy.Decision] = {}
    for d in held:
        notification = situation.notifications.get(d.notification_id)
        rules = situation.rules(d)
        if notification is None or rules is None:
            out[d.id] = policy.Decision(d.channel, DeliveryStatus.QUEUED)
            continue
        if is_cancelled(notification):
            out[d.id] = policy.Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.CANCELLED)
            continue
        recipient = situation.recipients.get(d.recipient_id)
        if recipient is None:
            out[d.id] = policy.Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.ERASED)
            continue
        request = policy.Request(expires_at=aware(notification.expires_at))
        out[d.id] = policy.recheck(
            rules, request, situation.prefs[d.recipient_id], addressable(recipient), d.channel, at
        )
    return out
