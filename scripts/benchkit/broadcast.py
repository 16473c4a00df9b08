"""The broadcast: one notification to every recipient, timed until every delivery is settled.

Settled means planned, with nothing `queued` or `sending` left: each delivery is sent,
delivered, failed, suppressed or scheduled, with its receipt in SQL. The figures come
from the receipts' own timestamps; the 0.5 s polling only decides when to stop.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Delivery, Notification, PlanChunk
from engine.store.states import IN_FLIGHT, NotificationStatus
from engine.timeutil import aware, now
from scripts.benchkit.client import Api, log
from scripts.benchkit.latency import Prober, latency
from scripts.benchkit.processes import Fleet, Sampler, profiled
from scripts.benchkit.stores import redis_roles

BROADCAST = "bench.flash_sale"
ORDER = "bench.order_delivered"
OFFER = {"card": "原神月卡", "off": "20%"}


def copy(title: str, body: str) -> dict[str, dict[str, str]]:
    return {"en": {"title": title, "body": body}, "zh-CN": {"title": title, "body": body}}


def broadcast_category(channels: list[str]) -> dict[str, Any]:
    text = copy("Flash sale: {{ data.card }}", "Today only: {{ data.card }} at {{ data.off }} off.")
    return {
        "name": "Flash sale (benchmark)",
        "kind": "promotional",
        "priority": "high",
        "channels": channels,
        "caps": [],
        "templates": {"inapp": text, "webhook": text},
    }


ORDER_CATEGORY = {
    "name": "Order delivered (benchmark)",
    "kind": "transactional",
    "priority": "critical",
    "channels": ["inapp"],
    "templates": {"inapp": copy("Your card is here", "Order {{ data.order }} is delivered.")},
}


def sink_count(sink: Api) -> int:
    """Webhooks the sink has received so far."""
    return int(sink.ok("GET", "/count")["count"])


def sink_connections(sink: Api) -> int:
    """TCP connections the sink has received webhooks on so far."""
    return int(sink.ok("GET", "/count")["connections"])


def outcomes(db: Database, notification_id: int) -> dict[str, dict[str, int]]:
    """Deliveries per channel and status (with the reason, if any)."""
    out: dict[str, dict[str, int]] = {}
    with db.session() as session:
        rows = session.execute(
            select(col(Delivery.channel), col(Delivery.status), col(Delivery.reason), func.count())
            .where(col(Delivery.notification_id) == notification_id)
            .group_by(col(Delivery.channel), col(Delivery.status), col(Delivery.reason))
        ).all()
    for channel, status, reason, count in rows:
        name = f"{status}/{reason}" if reason else status
        out.setdefault(channel, {})[name] = count
    return {channel: dict(sorted(v.items())) for channel, v in sorted(out.items())}


def watch(
    db: Database,
    notification_id: int,
    sink: Api,
    *,
    timeout: float,
    patience: float,
    seen: dict[str, Any],
) -> None:
    """Poll SQL every 0.5 s until planned with nothing in flight, noting in `seen` when
    each happened and the last progress (what a run that is cut short reports).

    Gives up after `timeout`, or after `patience` seconds without any progress.
    """
    started = time.monotonic()
    last_report = started
    last_state: tuple[Any, ...] = ()
    last_change = started
    while True:
        time.sleep(0.5)
        with db.session() as session:
            row = session.get(Notification, notification_id)
            assert row is not None
            state = row.status
            done, total = row.chunks_done, row.chunks_total
            busy = None
            if state in (NotificationStatus.PLANNED, NotificationStatus.DONE):
                seen.setdefault("planned", time.monotonic() - started)
                # `+ 0` keeps SQLite on the status index: it walks the rows in flight
                # rather than every delivery of the notification, twice a second.
                busy = session.execute(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        col(Delivery.status).in_(IN_FLIGHT),
                        col(Delivery.notification_id) + 0 == notification_id,
                    )
                ).scalar_one()
        elapsed = time.monotonic() - started
        if busy == 0:
            seen["settled"] = elapsed
            return
        current = (state, done, busy, sink_count(sink))
        seen["last"] = {
            "after_s": round(elapsed, 1),
            "status": state,
            "chunks": f"{done}/{total}",
            "in_flight": busy,
            "webhooks_received": current[3],
        }
        if current != last_state:
            last_state, last_change = current, time.monotonic()
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            log(
                f"  {elapsed:5.1f}s {state}: chunks {done}/{total}, in flight "
                f"{'-' if busy is None else busy}, webhooks received {current[3]:,}"
            )
        if elapsed > timeout:
            raise TimeoutError(f"the broadcast did not settle in {timeout:.0f}s ({current})")
        if time.monotonic() - last_change > patience:
            raise TimeoutError(f"the broadcast made no progress for {patience:.0f}s ({current})")


def sql_timings(db: Database, notification_id: int) -> dict[str, float]:
    """Seconds from the notification's acceptance (or its send time, for one scheduled
    ahead: a campaign step) to its last planned chunk and last receipt."""
    with db.session() as session:
        row = session.get(Notification, notification_id)
        assert row is not None
        created = max(filter(None, (aware(row.created_at), aware(row.send_at))))
        plan_end = aware(
            session.execute(
                select(func.max(PlanChunk.updated_at)).where(
                    col(PlanChunk.notification_id) == notification_id
                )
            ).scalar_one()
        )
        last = aware(
            session.execute(
                select(func.max(Delivery.updated_at)).where(
                    col(Delivery.notification_id) == notification_id
                )
            ).scalar_one()
        )
    assert created and plan_end and last
    return {
        "plan": (plan_end - created).total_seconds(),
        "total": (max(plan_end, last) - created).total_seconds(),
    }


def broadcast(
    args: argparse.Namespace,
    settings: Settings,
    db: Database,
    api: Api,
    sink: Api,
    fleet: Fleet,
    probe: str,
    out: dict[str, Any],
) -> dict[str, Any] | None:
    """One notification to everyone, timed until settled, its figures written into `out`;
    returns the latency probe's figures (None if skipped).

    A run cut short (a timeout, Ctrl-C) leaves in `out` how far it got.
    """
    redis_root, redis_name = redis_roles()
    # The PostgreSQL server's processes, only when the run is on PostgreSQL.
    postgres = {"postgres": "postgres"} if settings.database_url.startswith("postgres") else {}
    sampler = Sampler(
        {role: process.pid for role, process in fleet.running.items()} | redis_root,
        redis_name | postgres,
        pss=("workers",),
    )
    prober = None if args.skip_latency else Prober(api, ORDER, probe)
    received, connected = sink_count(sink), sink_connections(sink)
    profile = Path(args.profile).resolve() if args.profile else None
    body: dict[str, Any] = {"category": BROADCAST, "to": {"all": True}, "data": OFFER}
    if args.send == "best":
        body["send_at"] = "best"
    seen: dict[str, Any] = {}
    try:
        with profiled(fleet.pid("workers"), profile, gil=args.profile_gil):
            sampler.start()
            if prober:
                prober.start()
            if args.send == "campaign":  # one step, released by the scheduler in 2 s
                event = (now() + timedelta(hours=1, seconds=2)).isoformat()
                created = api.ok(
                    "POST", "/v1/campaigns", {**body, "event_at": event, "steps": ["-1h"]}
                )
                notification_id = int(created["steps"][0]["notification_id"])
            else:
                notification_id = int(api.ok("POST", "/v1/notifications", body)["id"])
            out["notification"] = notification_id
            log(f"broadcast {notification_id} accepted; waiting for every delivery to settle")
            # Stalled work is the scheduler's to recover (after `stall_after`): wait that out.
            patience = max(120.0, settings.stall_after + 60.0)
            watch(db, notification_id, sink, timeout=args.timeout, patience=patience, seen=seen)
    except BaseException:
        if prober:
            prober.abort()
        out.update(completed=False, progress=seen.get("last"), usage=sampler.finish())
        raise
    if prober:
        prober.finish()
    usage = sampler.finish()
    timings = sql_timings(db, notification_id)
    results = outcomes(db, notification_id)
    deliveries = sum(sum(v.values()) for v in results.values())
    webhooks = sink_count(sink) - received
    total = timings["total"]
    out.update(
        {
            "completed": True,
            "seconds": round(total, 2),
            "plan_seconds": round(timings["plan"], 2),
            "deliver_tail_seconds": round(total - timings["plan"], 2),
            "observed_seconds": {k: round(seen[k], 1) for k in ("planned", "settled") if k in seen},
            "recipients_per_s": round(args.recipients / total),
            "deliveries": deliveries,
            "deliveries_per_s": round(deliveries / total),
            "webhooks_received": webhooks,
            "webhooks_per_s": round(webhooks / total),
            # Keep-alive holding shows as a handful of connections, not one per webhook.
            "webhook_connections": sink_connections(sink) - connected,
            "outcomes": results,
            "peak_worker_rss_mb": usage["workers"]["peak_rss_mb"],
            "peak_worker_pss_mb": usage["workers"]["peak_pss_mb"],
            "usage": usage,
        }
    )
    return latency(db, prober) if prober else None
