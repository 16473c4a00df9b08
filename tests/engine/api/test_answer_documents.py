"""Domain results become the API's text on the way out: any time, naive as SQLite gives
it back or aware in any zone as PostgreSQL does, is ISO 8601 in UTC with its offset and
the same instant; any row id is its digits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.api.contract import OffContract, document
from engine.pipeline.receipts import Inbox, InboxItem
from engine.schemas.answers import InboxOut

ZONES = st.one_of(
    st.none(),
    st.integers(min_value=-14 * 60, max_value=14 * 60).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
IDS = st.integers(min_value=1, max_value=10**18 - 1)


def item(delivery_id: int, created_at: datetime | None) -> InboxItem:
    return InboxItem(
        delivery_id=delivery_id,
        notification_id=delivery_id,
        category="order.shipped",
        title="Shipped",
        body=None,
        action_url=None,
        read=False,
        feedback=None,
        created_at=created_at,
    )


@given(
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1)),
    zone=ZONES,
    delivery_id=IDS,
)
def test_a_time_is_iso_8601_in_utc_and_the_same_instant(
    at: datetime, zone: timezone | None, delivery_id: int
) -> None:
    given_at = at if zone is None else at.replace(tzinfo=zone)
    shown = document(InboxOut, Inbox(unread=1, items=[item(delivery_id, given_at)], next=None))
    (entry,) = shown["items"]
    text = entry["created_at"]
    assert text.endswith("+00:00")
    back = datetime.fromisoformat(text)
    assert back == (given_at if zone is not None else given_at.replace(tzinfo=UTC))
    assert entry["delivery_id"] == str(delivery_id) and entry["delivery_id"].isdigit()


@given(next_id=st.one_of(st.none(), IDS))
def test_a_cursor_is_its_digits_or_null(next_id: int | None) -> None:
    shown = document(InboxOut, Inbox(unread=0, items=[], next=next_id))
    assert shown == {"unread": 0, "items": [], "next": None if next_id is None else str(next_id)}


def test_a_result_off_its_model_is_a_bug_not_an_answer() -> None:
    with pytest.raises(OffContract):
        document(InboxOut, Inbox(unread=0, items=[item(True, None)], next=None))
