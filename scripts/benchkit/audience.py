"""The synthetic audience: N recipients with a realistic mix of preferences, written in bulk.

About 10% opted out of webhooks, 10% inside their quiet hours right now, 5% already at
their own daily cap (their Redis counter pre-set), the rest with default preferences in
a time zone where it is daytime. Every recipient has a webhook URL on the local sink.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from engine.pipeline.counters import Counters
from engine.settings import Settings
from engine.store.db import Database
from engine.store.models import Preference, Recipient
from preferences.model import Cap
from scripts.benchkit.client import log

BATCH = 10_000
# Where recipients live; those where it is daytime now get the default preferences.
ZONES = (
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Auckland",
    "Australia/Sydney",
)
OWN_CAP = Cap(count=1, per=86400)


def daytime_zones(at: datetime, margin: timedelta = timedelta(hours=1)) -> list[str]:
    """Zones where it is daytime: at least `margin` after the platform's default quiet hours
    (22:00-08:00) end and twice that before they begin again."""
    found = []
    for name in ZONES:
        local = at.astimezone(ZoneInfo(name))
        start = local.replace(hour=8, minute=0, second=0, microsecond=0) + margin
        end = local.replace(hour=22, minute=0, second=0, microsecond=0) - margin * 2
        if start <= local <= end:
            found.append(name)
    if found:
        return found
    offset = (14 - at.hour) % 24  # a fixed-offset zone where it is about 14:00
    offset = offset - 24 if offset > 12 else offset
    return [f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"]


def quiet_window(zone: str, at: datetime) -> dict[str, Any]:
    """Quiet hours that started an hour ago and end in two, in the recipient's zone."""
    local = at.astimezone(ZoneInfo(zone))
    return {
        "enabled": True,
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=2)).strftime("%H:%M"),
        "timezone": zone,
    }


def populate(db: Database, count: int, sink_url: str, at: datetime) -> dict[str, Any]:
    """Write `count` recipients and their stored preferences in bulk; the mix and who is capped.

    Ids are `b0000000`, `b0000001`, … and the mix is drawn from a seeded generator in id
    order, so the first M recipients (the baseline's audience) have the same mix.
    """
    rng = random.Random(7)
    zones = daytime_zones(at)
    quiet = {zone: quiet_window(zone, at) for zone in ZONES}
    mix: Counter[str] = Counter()
    capped: list[str] = []
    probe = None
    for start in range(0, count, BATCH):
        people, stored = [], []
        for i in range(start, min(start + BATCH, count)):
            rid = f"b{i:07d}"
            roll = rng.random()
            zone = rng.choice(ZONES if 0.10 <= roll < 0.20 else zones)
            people.append(
                {
                    "id": rid,
                    "email": None,
                    "phone": None,
                    "push_tokens": None,
                    "webhook_url": f"{sink_url}/hook/{rid}",
                    "timezone": zone,
                    "locale": "zh-CN" if rng.random() < 0.7 else "en",
                    "annual_spend": round(rng.paretovariate(1.2) * 100, 2),
                    "last_active_at": at - timedelta(hours=rng.randrange(24 * 60)),
                    "tags": rng.sample(["game.mobile", "video.anime", "utility.transit"], 2),
                    "links_version": 0,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            choice: dict[str, Any] = {}
            if roll < 0.10:
                mix["opted_out_webhook"] += 1
                choice["channels"] = {"webhook": False}
            elif roll < 0.20:
                mix["quiet_hours"] += 1
                choice["quiet_hours"] = quiet[zone]
            elif roll < 0.25:
                mix["capped"] += 1
                choice["caps"] = [{"count": OWN_CAP.count, "per": OWN_CAP.per}]
                capped.append(rid)
            else:
                mix["default"] += 1
                probe = probe or rid
            if choice:
                stored.append(
                    {
                        "recipient_id": rid,
                        "channels": None,
                        "categories": None,
                        "caps": None,
                        "quiet_hours": None,
                        "paused_until": None,
                        "digest": None,
                        "unsubscribed": False,
                        "updated_at": at,
                        **choice,
                    }
                )
        with db.session() as session:
            session.execute(insert(Recipient), people)
            if stored:
                session.execute(insert(Preference), stored)
        if (start // BATCH) % 20 == 19:
            log(f"  {start + len(people):,} recipients written")
    return {"mix": dict(mix), "capped": capped, "probe": probe}


def seed_caps(settings: Settings, recipient_ids: list[str], at: datetime) -> None:
    """Count one notification against each recipient's global cap: they were already
    notified a minute before `at`.

    The key is the one `engine.pipeline.counters.Counters.admit` counts the global cap ("g") in,
    written through the engine's own counters client so that it lands in the database
    the workers read; the counters are then marked complete.
    """
    counters = Counters.from_settings(settings)
    try:
        _seed(counters, recipient_ids, at - timedelta(minutes=1))
        counters.mark_ready(at)
    finally:
        counters.close()


def _seed(counters: Counters, recipient_ids: list[str], at: datetime) -> None:
    ttl = OWN_CAP.per + 86400
    for start in range(0, len(recipient_ids), BATCH):
        pipe = counters.client.pipeline(transaction=False)
        for rid in recipient_ids[start : start + BATCH]:
            key = counters.keys.cap(rid, "g")
            pipe.zadd(key, {"seed": at.timestamp()})
            pipe.expire(key, ttl)
        pipe.execute()
