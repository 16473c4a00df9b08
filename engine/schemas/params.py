"""Path, query and header parameters of the management API."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.schemas.catalog import Topic
from engine.schemas.common import Key, Limit, Query, RowId, Strict, UtcDatetime


class TopicPath(Strict):
    key: Topic


class KeyPath(Strict):
    key: Key


class RecipientPath(Strict):
    id: Key


class FollowPath(Strict):
    id: Key
    topic: Topic


class RowPath(Strict):
    """A notification or delivery id; one that is not an id is a 404."""

    not_found_when_invalid: ClassVar[bool] = True
    id: RowId


class NotificationPage(Query):
    """Deliveries of a notification, oldest first, after the cursor `after`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    after: RowId | None = Field(default=None, description="The `next` of the previous page.")


class ReceiptPage(Query):
    """A recipient's receipts or inbox, newest first, before the cursor `before`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    before: RowId | None = Field(default=None, description="The `next` of the previous page.")


class StatsQuery(Query):
    """`GET /v1/stats`: grouping and time range (ISO 8601 with an offset)."""

    by: Literal["category", "channel", "campaign", "variant"] = "category"
    category: Key | None = Field(default=None, description="Only this category.")
    campaign: RowId | None = Field(default=None, description="Only this campaign's steps.")
    notification: RowId | None = Field(default=None, description="Only this notification.")
    since: UtcDatetime | None = Field(
        default=None, alias="from", description="Default: 7 days before `to`."
    )
    until: UtcDatetime | None = Field(default=None, alias="to", description="Default: now.")


class IdempotencyHeaders(BaseModel):
    """A retry with the same key answers the first request's notification."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str | None = Field(
        default=None, alias="Idempotency-Key", min_length=1, max_length=200
    )


class TopicsQuery(Query):
    """`GET /v1/topics`: by key order, paged by `after`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    after: Topic | None = Field(default=None, description="The `next` of the previous page.")
