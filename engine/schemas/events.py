"""Documents of `/v1/event-endpoints`: where delivery events are pushed, and how it goes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, AnyHttpUrl, Field

from engine.schemas.common import IdText, Limit, Out, Query, RowId, Strict, Timestamp
from engine.store.outbox import EVENT_TYPES
from engine.store.states import BatchStatus

EventType = Literal[
    "delivery.sent",
    "delivery.delivered",
    "delivery.failed",
    "delivery.suppressed",
    "delivery.read",
    "delivery.clicked",
    "delivery.converted",
    "feedback.created",
    "recipient.unsubscribed",
]


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("lists each type once")
    return values


class EventEndpointIn(Strict):
    """`POST /v1/event-endpoints`: an http(s) URL the outbound policy allows, and the
    event types it wants (every type when left out)."""

    url: AnyHttpUrl = Field(description="Where batches of events are POSTed.")
    types: Annotated[list[EventType], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1, description="Event types to receive; default: all."
    )
    description: str | None = Field(default=None, max_length=200)


class EventEndpointOut(Out):
    id: IdText
    url: str
    types: list[str]
    description: str | None
    failures: int = Field(description="Failed posts in a row; reset by a success.")
    last_error: str | None
    last_success_at: Timestamp | None
    paused: bool
    paused_at: Timestamp | None
    pause_reason: str | None = Field(description="Why posting stopped, for the console.")
    pending_batches: int = Field(description="Batches waiting to be posted or retried.")
    failed_batches: int = Field(description="Batches given up on after every retry.")
    created_at: Timestamp | None


class EventEndpointCreatedOut(EventEndpointOut):
    secret: str = Field(
        description="The Standard Webhooks signing secret (`whsec_…`): shown this once."
    )


class EventEndpointList(Out):
    items: list[EventEndpointOut]


class EventEndpointDeletedOut(Out):
    id: IdText
    deleted: bool


class FailuresQuery(Query):
    limit: Limit | None = Field(default=None, description="Page size; default 100.")
    before: RowId | None = Field(default=None, description="The `next` of the previous page.")


class EventBatchOut(Out):
    id: IdText
    webhook_id: str = Field(description="The `webhook-id` header its every attempt carries.")
    status: BatchStatus
    events: int
    attempts: int
    last_error: str | None
    next_attempt_at: Timestamp | None
    created_at: Timestamp | None


class EventBatchPage(Out):
    items: list[EventBatchOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


assert set(EVENT_TYPES) == set(EventType.__args__)  # type: ignore[attr-defined]
