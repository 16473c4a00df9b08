"""Documents of the message log: notifications listed and filtered, one delivery with its
history, cancelling a notification, and recipients listed by segment.

Query parameters follow the rest of the API: unknown ones are ignored, bad values are a
422 naming the parameter; cursors are the `next` of the previous page.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from engine.schemas.answers import DeliveryOut, RecipientOut
from engine.schemas.common import IdText, Key, Limit, Out, Query, RowId, Timestamp, UtcDatetime
from engine.store.states import DeliveryStatus, NotificationStatus

# What `status` of a notification may be: the planning stage, `done` once planned with
# nothing left to send, or `cancelled`.
NotificationState = NotificationStatus
Tier = Literal["whale", "dolphin", "minnow"]
Activity = Literal["active", "sleeping", "churned"]


class NotificationsQuery(Query):
    """`GET /v1/notifications`: newest first, filtered, paged by `before`."""

    category: Key | None = Field(default=None, description="Only this category's key.")
    status: NotificationState | None = Field(default=None, description="Only in this status.")
    created_after: UtcDatetime | None = Field(
        default=None, description="Accepted at or after this time (ISO 8601 with offset)."
    )
    created_before: UtcDatetime | None = Field(
        default=None, description="Accepted before this time (ISO 8601 with offset)."
    )
    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    before: RowId | None = Field(default=None, description="The `next` of the previous page.")


class AudienceOut(Out):
    """Who a notification is for, without listing every id."""

    type: Literal["ids", "segment", "all", "topic"]
    recipients: int | None = Field(description="How many ids were listed (type `ids`).")
    segment: dict[str, Any] | None = Field(description="The segment (type `segment`).")
    topic: str | None = Field(description="The followed topic (type `topic`).")


class NotificationSummaryOut(Out):
    id: IdText
    category: str
    status: NotificationState
    audience: AudienceOut
    recipients: int = Field(description="Recipients in the audience once planning cut it.")
    send_at: Timestamp | Literal["best"] | None = Field(
        description='A time, "best" (each recipient\'s best hour), or null for at once.'
    )
    expires_at: Timestamp | None
    created_at: Timestamp | None
    cancelled_at: Timestamp | None
    counts: dict[DeliveryStatus, int] = Field(description="Deliveries per status.")


class NotificationList(Out):
    items: list[NotificationSummaryOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


class DeliveryDetailOut(DeliveryOut):
    """A delivery with its event history, error and what was sent."""

    title: str | None
    body: str | None
    action_url: str | None
    locale: str | None


class CancelledOut(Out):
    id: IdText
    status: NotificationState
    cancelled: int = Field(description="Deliveries this call suppressed with reason `cancelled`.")
    chunks_cancelled: int = Field(description="Slices of the audience this call left unplanned.")
    cancelled_at: Timestamp
    counts: dict[DeliveryStatus, int] = Field(description="Deliveries per status after the cancel.")


class RecipientsQuery(Query):
    """`GET /v1/recipients`: by id order, filtered, paged by `after`."""

    prefix: str | None = Field(
        default=None, min_length=1, max_length=200, description="Ids that start with this."
    )
    tier: Tier | None = Field(default=None, description="Spend tier.")
    activity: Activity | None = Field(default=None, description="Activity segment.")
    tag: Key | None = Field(default=None, description="Has this interest tag.")
    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    after: Key | None = Field(default=None, description="The `next` of the previous page.")


class RecipientList(Out):
    items: list[RecipientOut]
    next: str | None = Field(description="Pass as `after` for the next page.")
