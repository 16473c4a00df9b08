"""Request and answer documents of the campaigns API (`/v1/campaigns`), validated with
pydantic like the rest of the API (`engine.schemas`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from engine.pipeline import rhythm
from engine.schemas.common import (
    ChannelName,
    IdText,
    Key,
    Limit,
    Out,
    Query,
    RowId,
    Strict,
    Timestamp,
    UtcDatetime,
    _storable_data,
    _unique,
)
from engine.schemas.notifications import Audience, ContentIn, NotificationIn, Variants
from engine.store.states import CampaignStatus, StepStatus


def _offset(value: Any) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError("a step is a duration before the event, like '-1h', or negative seconds")
    return rhythm.parse_offset(value)


def _distinct(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError("lists each step once")
    return values


# A step: how long before the event it goes, `"-3d"`, `"-1h"`, `"-90m"` or negative seconds.
Offset = Annotated[int, BeforeValidator(_offset)]


class CampaignIn(Strict):
    """`POST /v1/campaigns`: a category, an audience, copy or data, and an event time.

    `steps` defaults to the playbook's "3-2-1" (`["-3d", "-2d", "-1h"]`); a step whose
    time has already passed when the campaign is created is skipped.
    """

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="What people call it: shown in the console and beside its id in stats.",
    )
    category: Key
    to: Audience
    event_at: UtcDatetime = Field(description="When the sale starts or the card is back.")
    steps: Annotated[list[Offset], AfterValidator(_distinct)] | None = Field(
        default=None, min_length=1, max_length=rhythm.MAX_STEPS
    )
    data: Annotated[dict[str, Any], AfterValidator(_storable_data)] = Field(default_factory=dict)
    content: ContentIn | None = None
    channels: Annotated[list[ChannelName], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1
    )
    variants: Variants | None = Field(
        default=None,
        min_length=2,
        max_length=10,
        description="An A/B test over every step: a recipient gets one variant throughout.",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Or the Idempotency-Key header: a retry answers the first campaign.",
    )

    def notification(self) -> NotificationIn:
        """What every step sends: the notification a step is, less its timing."""
        return NotificationIn(
            category=self.category,
            to=self.to,
            data=self.data,
            content=self.content,
            channels=self.channels,
            variants=self.variants,
        )


class CampaignPage(Query):
    """Campaigns, newest first, before the cursor `before`."""

    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    before: RowId | None = Field(default=None, description="The `next` of the previous page.")


class FunnelOut(Out):
    """Recipients at each stage: reached (`sent`), `opened`, `clicked`, `converted`, and
    `stopped` (left out of later steps because they had clicked or converted)."""

    sent: int
    opened: int
    clicked: int
    converted: int
    stopped: int


class StepOut(Out):
    offset: str = Field(description="Before the event, like '-3d'.")
    at: Timestamp
    status: StepStatus
    notification_id: IdText | None = Field(description="The step's notification; null if skipped.")
    counts: dict[str, int] | None = Field(
        default=None, description="Deliveries per status (not in lists)."
    )
    funnel: FunnelOut | None = None


class CampaignOut(Out):
    id: IdText
    name: str | None
    category: str
    status: CampaignStatus
    event_at: Timestamp
    recipients: int = Field(description="Recipients the audience selected when created.")
    created_at: Timestamp
    cancelled_at: Timestamp | None
    steps: list[StepOut]
    funnel: FunnelOut | None = Field(default=None, description="Not in lists.")


class CampaignList(Out):
    items: list[CampaignOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")
