"""How fast the planner can learn what N recipients want: `preferences.store.load_many`.

Creates N recipients with a realistic mix of stored preferences (most people never change
anything), migrates a database, then times `load_many` over all of them, best of five, and
prints one JSON line:

    {"backend": "sqlite", "recipients": 10000, "seconds": 0.05, "per_second": 200000}

    python scripts/bench_preferences.py                       # a temporary SQLite file
    python scripts/bench_preferences.py --database-url URL    # an existing, empty database
    python scripts/bench_preferences.py --postgres            # a fresh PostgreSQL database,
                                                              # created and dropped here
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert
from sqlmodel import col, select

from engine.settings import Settings
from engine.store.db import Database, migrate
from engine.store.models import Category, Preference, Recipient
from preferences import store
from scripts.benchkit.stores import fresh_postgres

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ZONES = [
    "Asia/Shanghai",
    "Asia/Shanghai",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Europe/Berlin",
    "America/New_York",
    None,
]
CATEGORIES = ["promo.flash_sale", "promo.member_day", "card.new", "points.expiring"]


def _recipient(index: int, rng: random.Random, at: datetime) -> dict[str, Any]:
    return {
        "id": f"u-{index:07d}",
        "email": f"user{index}@example.com",
        "timezone": rng.choice(ZONES),
        "locale": rng.choice(["zh-CN", "zh-CN", "en"]),
        "annual_spend": round(rng.paretovariate(1.2) * 100, 2),
        "last_active_at": at - timedelta(hours=rng.randrange(0, 24 * 90)),
        "tags": rng.sample(["game.mobile", "video.anime", "utility.transit", "music"], 2),
        "links_version": 0,
        "created_at": at,
        "updated_at": at,
    }


def _preference(rid: str, rng: random.Random, at: datetime) -> dict[str, Any] | None:
    """What one recipient stored, if anything: about 40% changed something."""
    roll = rng.random()
    if roll < 0.60:
        return None
    row: dict[str, Any] = {
        "recipient_id": rid,
        "channels": None,
        "categories": None,
        "caps": None,
        "quiet_hours": None,
        "paused_until": None,
        "digest": None,
        "unsubscribed": False,
        "updated_at": at,
    }
    if roll < 0.75:
        row["channels"] = {"sms": False, "push": rng.random() < 0.5}
    elif roll < 0.85:
        row["categories"] = {
            key: {
                "enabled": rng.random() < 0.3,
                "channels": {"email": False},
                "caps": [{"count": 1, "per": 86400}],
            }
            for key in rng.sample(CATEGORIES, 2)
        }
    elif roll < 0.93:
        row["quiet_hours"] = {
            "start": "23:00",
            "end": "07:30",
            "days": ["mon", "tue", "wed", "thu", "fri"],
        }
        row["caps"] = [{"count": 3, "per": 86400}]
    elif roll < 0.98:
        row["unsubscribed"] = True
    else:
        row["paused_until"] = at + timedelta(days=rng.randrange(1, 30))
        row["digest"] = {"enabled": True, "at": "21:00"}
    return row


def populate(database: Database, count: int, *, seed: int = 7) -> None:
    """Write `count` recipients and their stored preferences in bulk."""
    rng = random.Random(seed)
    at = datetime.now(UTC)
    with database.session() as session:
        for key in CATEGORIES:
            session.add(
                Category(
                    key=key,
                    name=key,
                    kind="promotional",
                    priority="normal",
                    channels=["push", "inapp", "email"],
                )
            )
    for start in range(0, count, 5000):
        people = [_recipient(i, rng, at) for i in range(start, min(start + 5000, count))]
        stored = [p for r in people if (p := _preference(r["id"], rng, at)) is not None]
        with database.session() as session:
            session.execute(insert(Recipient), people)
            if stored:
                session.execute(insert(Preference), stored)


def measure(database: Database, settings: Settings, repeat: int) -> tuple[int, float]:
    """(recipients loaded, best seconds) for `load_many` over every recipient."""
    with database.session() as session:
        recipients = list(session.exec(select(Recipient).order_by(col(Recipient.id))))
    best = float("inf")
    for _ in range(repeat):
        with database.session() as session:
            started = time.perf_counter()
            loaded = store.load_many(session, recipients, settings=settings)
            best = min(best, time.perf_counter() - started)
        assert len(loaded) == len(recipients)
    return len(recipients), best


@contextmanager
def temporary_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as folder:
        yield f"sqlite:///{Path(folder) / 'bench.db'}"


def run(url: str, count: int, repeat: int) -> dict[str, Any]:
    settings = Settings(database_url=url)
    migrate(settings)
    database = Database(settings)
    try:
        populate(database, count)
        loaded, seconds = measure(database, settings, repeat)
    finally:
        database.close()
    return {
        "backend": "sqlite" if settings.is_sqlite else "postgresql",
        "recipients": loaded,
        "seconds": round(seconds, 4),
        "per_second": round(loaded / seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--recipients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best one counts")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--database-url", help="an empty database (default: a temporary SQLite)")
    target.add_argument(
        "--postgres",
        action="store_true",
        help="create a fresh PostgreSQL database for the run and drop it after",
    )
    parser.add_argument(
        "--postgres-admin-url",
        default=POSTGRES_ADMIN,
        help="where to create that database (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    if args.postgres:
        with fresh_postgres(args.postgres_admin_url) as url:
            result = run(url, args.recipients, args.repeat)
    elif args.database_url:
        result = run(args.database_url, args.recipients, args.repeat)
    else:
        with temporary_sqlite() as url:
            result = run(url, args.recipients, args.repeat)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
