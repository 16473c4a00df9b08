"""Campaigns: create one as a notification per step, read its steps and funnel, cancel it.

Each step is an ordinary notification (`Notification.campaign_id`) with `send_at` at the
step's time and `expires_at` at the event: durable in SQL, released by the scheduler,
planned by the same chunk planner, so it obeys every preference, cap, quiet hour, pause
and collapse rule a notification obeys; `engine.pipeline.rhythm` adds what is particular
to a campaign (no step after a click or conversion, one step at a time).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from engine.errors import Conflict, IdempotencyMismatch, Invalid, NotFound
from engine.pipeline import accept, rhythm
from engine.pipeline.cancel import drain, end_unsent, is_cancelled
from engine.schemas.campaigns import CampaignIn
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Campaign, Delivery, Notification
from engine.store.states import (
    REPORTED,
    UNSETTLED,
    CampaignStatus,
    NotificationStatus,
    StepStatus,
)
from engine.timeutil import aware, iso, now


def submit(db: Database, spec: CampaignIn, *, settings: Settings) -> tuple[dict[str, Any], bool]:
    """Create a campaign, or answer the first one for a repeated idempotency key: returns
    its `view` and whether it is a replay.

    The same key with a different request is a 422 (`idempotency_mismatch`), as for a
    notification; two concurrent requests with one key create one campaign (the unique
    index decides, the loser reads the winner's back).
    """
    for attempt in (1, 2):
        try:
            with db.session() as session:
                if spec.idempotency_key and (found := _by_key(session, spec)) is not None:
                    return view(session, found), True
                return create(session, spec, settings=settings), False
        except IntegrityError:
            if attempt == 2 or not spec.idempotency_key:
                raise
    raise AssertionError("unreachable")


def _by_key(session: Session, spec: CampaignIn) -> int | None:
    found = session.exec(
        select(Campaign).where(col(Campaign.idempotency_key) == spec.idempotency_key)
    ).first()
    if found is None:
        return None
    if found.request_hash != accept.request_hash(spec):
        raise IdempotencyMismatch(
            "this Idempotency-Key was used for a different request", field="idempotency_key"
        )
    return found.id


def create(session: Session, spec: CampaignIn, *, settings: Settings) -> dict[str, Any]:
    """Store a campaign and one notification per step still ahead; returns its `view`.

    Raises `Invalid` (422) naming `event_at` when the event has passed, `steps` when
    every step's time has, and the fields `accept.validate` names (category, channels,
    to, content, data) as a notification would.
    """
    at = now()
    event_at = spec.event_at
    if event_at <= at:
        raise Invalid("the event time has passed", field="event_at")
    offsets = list(spec.steps or rhythm.DEFAULT_STEPS)
    times = rhythm.step_times(event_at, offsets)
    if all(t <= at for t in times):
        raise Invalid("every step's time has passed: give steps closer to the event", field="steps")
    base = spec.notification()
    campaign = Campaign(
        name=spec.name,
        idempotency_key=spec.idempotency_key,
        request_hash=accept.request_hash(spec),
        category=spec.category,
        audience=accept.audience_of(base),
        event_at=event_at,
        steps=[],
        created_at=at,
        updated_at=at,
    )
    session.add(campaign)
    session.flush()
    steps: list[dict[str, Any]] = []
    for offset, due in zip(offsets, times, strict=True):
        step: dict[str, Any] = {"offset": offset, "notification_id": None}
        if due > at:
            step_spec = base.model_copy(update={"send_at": due, "expires_at": event_at})
            accepted = accept.accept(session, step_spec, settings=settings)
            row = session.get(Notification, accepted.id)
            assert row is not None
            row.campaign_id = campaign.id
            session.add(row)
            step["notification_id"] = accepted.id
        steps.append(step)
    campaign.steps = steps
    session.add(campaign)
    session.flush()
    assert campaign.id is not None
    return view(session, campaign.id)


def view(session: Session, campaign_id: int, *, detail: bool = True) -> dict[str, Any]:
    """A campaign with each step's status; with `detail`, each step's deliveries per
    status and funnel, and the campaign's funnel over distinct recipients."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}", field="id")
    return _views(session, [campaign], detail=detail)[0]


def page(session: Session, *, before: int | None, limit: int) -> dict[str, Any]:
    """Campaigns, newest first, without counts."""
    query = select(Campaign)
    if before is not None:
        query = query.where(col(Campaign.id) < before)
    rows = list(session.exec(query.order_by(col(Campaign.id).desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": _views(session, rows, detail=False),
        "next": str(rows[-1].id) if more and rows else None,
    }


def cancel(db: Database, campaign_id: int, *, wait: float) -> dict[str, Any]:
    """Cancel what a campaign has not sent yet: steps not yet planned never are, and
    waiting deliveries end `suppressed/cancelled`. Like a notification's cancel
    (`engine.pipeline.cancel`), it answers once nothing of the campaign is being sent or
    planned, or after `wait` seconds (a worker holding a delivery longer died, and
    whoever takes it over suppresses it). Cancelling again changes nothing.

    Raises `NotFound` for an unknown campaign, `Conflict` (409, `finished`) for one whose
    every step is done.
    """
    deadline = time.monotonic() + wait
    with db.session() as session:
        _stop(session, campaign_id)
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        ids = _step_ids(campaign)
    drain(db, ids, deadline=deadline)
    with db.session() as session:
        return view(session, campaign_id)


def _stop(session: Session, campaign_id: int) -> None:
    """Mark the campaign and its steps cancelled and end their waiting deliveries, in one
    transaction; a campaign cancelled before is left as it is."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}", field="id")
    if campaign.cancelled_at is None:
        current = _views(session, [campaign], detail=False)[0]
        if current["status"] == "done":
            raise Conflict(
                f"campaign {campaign_id} is done: nothing is left to cancel",
                field="id",
                code="finished",
            )
        at = now()
        ids = _step_ids(campaign)
        session.execute(
            update(Notification)
            .where(
                col(Notification.id).in_(ids),
                col(Notification.status) == NotificationStatus.ACCEPTED,
            )
            .values(status=NotificationStatus.CANCELLED, updated_at=at)
        )
        # Chunks still to plan find a cancelled notification and plan nothing.
        session.execute(
            update(Notification)
            .where(
                col(Notification.id).in_(ids),
                col(Notification.status) == NotificationStatus.PLANNING,
            )
            .values(status=NotificationStatus.CANCELLED, updated_at=at)
        )
        end_unsent(session, ids, at)
        campaign.cancelled_at = at
        campaign.updated_at = at
        session.add(campaign)
        session.flush()


def _step_ids(campaign: Campaign) -> list[int]:
    return [int(s["notification_id"]) for s in campaign.steps if s["notification_id"] is not None]


def _views(session: Session, campaigns: list[Campaign], *, detail: bool) -> list[dict[str, Any]]:
    ids = [i for c in campaigns for i in _step_ids(c)]
    notifications = {
        n.id: n for n in session.exec(select(Notification).where(col(Notification.id).in_(ids)))
    }
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(REPORTED, 0))
    for notification_id, state, count in session.exec(
        select(Delivery.notification_id, Delivery.status, func.count())
        .where(col(Delivery.notification_id).in_(ids))
        .group_by(col(Delivery.notification_id), col(Delivery.status))
    ):
        counts[notification_id][state] = count
    step_funnels = _funnels(session, ids, by_step=True) if detail else {}
    out = []
    for campaign in campaigns:
        steps = []
        event_at = aware(campaign.event_at) or now()
        offsets = [s["offset"] for s in campaign.steps]
        for step, due in zip(campaign.steps, rhythm.step_times(event_at, offsets), strict=True):
            nid = step["notification_id"]
            notification = notifications.get(nid) if nid is not None else None
            entry: dict[str, Any] = {
                "offset": rhythm.format_offset(step["offset"]),
                "at": iso(due),
                "status": _step_status(notification, counts.get(nid or 0)),
                "notification_id": str(nid) if nid is not None else None,
            }
            if detail:
                entry["counts"] = dict(counts.get(nid or 0) or dict.fromkeys(REPORTED, 0))
                entry["funnel"] = step_funnels.get(nid or 0, _zero())
            steps.append(entry)
        first = next((notifications[i] for i in _step_ids(campaign) if i in notifications), None)
        body: dict[str, Any] = {
            "id": str(campaign.id),
            "name": campaign.name,
            "category": campaign.category,
            "status": _campaign_status(campaign, [s["status"] for s in steps]),
            "event_at": iso(campaign.event_at),
            "recipients": first.recipients if first is not None else 0,
            "created_at": iso(campaign.created_at),
            "cancelled_at": iso(campaign.cancelled_at),
            "steps": steps,
        }
        if detail:
            body["funnel"] = _funnels(session, _step_ids(campaign), by_step=False).get(0, _zero())
        out.append(body)
    return out


def _zero() -> dict[str, int]:
    return dict.fromkeys((*rhythm.FUNNEL, "stopped"), 0)


def _funnels(session: Session, ids: list[int], *, by_step: bool) -> dict[int, dict[str, int]]:
    """Distinct recipients at each funnel stage, per step (`by_step`) or over all of
    `ids` (under key 0): one count query per stage."""
    found: dict[int, dict[str, int]] = defaultdict(_zero)
    if not ids:
        return found
    stages: dict[str, Any] = {
        name: col(Delivery.status).in_(statuses) for name, statuses in rhythm.FUNNEL.items()
    }
    stages["stopped"] = col(Delivery.reason).in_(rhythm.STOPPED)
    for name, condition in stages.items():
        distinct = func.count(func.distinct(col(Delivery.recipient_id)))
        where = (col(Delivery.notification_id).in_(ids), condition)
        if by_step:
            for nid, count in session.exec(
                select(Delivery.notification_id, distinct)
                .where(*where)
                .group_by(col(Delivery.notification_id))
            ):
                found[nid][name] = count
        else:
            found[0][name] = session.exec(select(distinct).where(*where)).one()
    return found


def _step_status(notification: Notification | None, counts: dict[str, int] | None) -> StepStatus:
    if notification is None:
        return StepStatus.SKIPPED
    if is_cancelled(notification):
        return StepStatus.CANCELLED
    state = notification.status
    if state == NotificationStatus.ACCEPTED:
        return StepStatus.SCHEDULED
    if state == NotificationStatus.PLANNED and not any((counts or {}).get(s) for s in UNSETTLED):
        return StepStatus.DONE
    return StepStatus(state)


def _campaign_status(campaign: Campaign, steps: list[StepStatus]) -> CampaignStatus:
    if campaign.cancelled_at is not None:
        return CampaignStatus.CANCELLED
    live = [s for s in steps if s != StepStatus.SKIPPED]
    if all(s in (StepStatus.DONE, StepStatus.CANCELLED) for s in live):
        return CampaignStatus.DONE
    if any(s in (StepStatus.PLANNING, StepStatus.PLANNED, StepStatus.DONE) for s in live):
        return CampaignStatus.RUNNING
    return CampaignStatus.SCHEDULED
