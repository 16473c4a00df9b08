"""Bulk writes store each row's own values, however many rows share one."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Recipient
from engine.timeutil import now

TAGS = st.lists(st.sampled_from(["vip", "game.mobile", "1", "true", "é"]), max_size=3)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tags=st.lists(st.one_of(st.none(), TAGS), min_size=1, max_size=40))
def test_upserted_rows_read_back_with_their_own_tags(db: Database, tags: list[Any]) -> None:
    # Many rows share a list: each is converted once, and each row keeps its own.
    prefix = uuid.uuid4().hex[:8]
    stamp = now()
    rows = [
        {
            "id": f"{prefix}-{i}",
            "tags": value,
            "annual_spend": 0,
            "links_version": 0,
            "links_salt": "0" * 16,
            "created_at": stamp,
            "updated_at": stamp,
        }
        for i, value in enumerate(tags)
    ]
    with db.session() as session:
        bulk.upsert(session, Recipient, rows, update=("tags", "updated_at"))
    with db.session() as session:
        stored = dict(
            session.exec(
                select(Recipient.id, Recipient.tags).where(col(Recipient.id).startswith(prefix))
            ).all()
        )
    assert stored == {row["id"]: row["tags"] for row in rows}
