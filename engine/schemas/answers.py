"""Answer documents of the management API: exactly their fields, or the answer is a 500."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, RootModel

from engine.schemas.common import IdText, Out, Timestamp
from engine.store.states import DeliveryStatus, EventStatus, NotificationStatus, Reason


class LineErrorOut(Out):
    """One refused line of an import: its number (1 is the first, a CSV header included),
    the field in the API's terms (`line` for a line that does not parse) and why."""

    line: int
    field: str
    message: str


class ImportedOut(Out):
    """An import that landed whole."""

    upserted: int = Field(description="Recipients created or updated.")
    lines: int = Field(description="The number of the last line holding a recipient.")


class ErrorDetail(Out):
    code: str
    message: str
    field: str | None
    unknown: list[str] | None = Field(
        default=None, description="`unknown_recipients`: every recipient id not found."
    )
    refused: int | None = Field(
        default=None, description="`invalid_lines`: how many lines of an import are refused."
    )
    lines: list[LineErrorOut] | None = Field(
        default=None,
        description="`invalid_lines`: the first 100 refused lines of an import, in order.",
    )


class ErrorOut(Out):
    """Every error: `{"error": {"code", "message", "field"}}`."""

    error: ErrorDetail


class CapOut(Out):
    count: int
    per: str = Field(description="A duration like '1h' or '7d'.")


class CategoryOut(Out):
    key: str
    # As written: one text for every reader, or one per locale.
    name: str | dict[str, str]
    description: str | dict[str, str] | None
    kind: str
    priority: str
    channels: list[str]
    required: bool
    caps: list[CapOut]
    caps_by_activity: dict[str, list[CapOut]]
    over_cap: str | None
    collapse_window: str | None
    escalate_after: str | None
    global_cap: bool
    default_locale: str
    templates: dict[str, dict[str, dict[str, str]]]
    digest_templates: dict[str, dict[str, dict[str, str]]]
    created_at: Timestamp | None
    updated_at: Timestamp | None


class CategoryList(Out):
    items: list[CategoryOut]


class RecipientOut(Out):
    id: str
    name: str | None
    attributes: dict[str, Any]
    email: str | None
    phone: str | None
    push_tokens: list[str]
    webhook_url: str | None
    timezone: str | None
    locale: str | None
    annual_spend: float
    last_active_at: Timestamp | None
    tags: list[str]
    tier: str = Field(description="Derived from annual_spend: whale, dolphin or minnow.")
    activity: str = Field(description="Derived from last_active_at: active, sleeping, churned.")
    created_at: Timestamp | None
    updated_at: Timestamp | None


class UpsertedOut(Out):
    upserted: int


class FollowOut(Out):
    topic: str
    created_at: Timestamp | None


class TopicOut(Out):
    key: str
    # As written: one text for every reader, or one per locale.
    name: str | dict[str, str]
    default_locale: str
    created_at: Timestamp | None
    updated_at: Timestamp | None


class TopicListed(Out):
    key: str
    name: str | dict[str, str] | None = Field(
        description="As written, one text or one per locale; null for a topic nobody named."
    )
    default_locale: str | None
    followers: int = Field(description="How many recipients follow it now.")


class TopicList(Out):
    items: list[TopicListed]
    next: str | None = Field(description="Pass as `after` for the next page.")


class TopicDeleted(Out):
    key: str
    deleted: bool


class FollowList(Out):
    items: list[FollowOut] = Field(description="The recipient's follows, by topic.")


class UnfollowedOut(Out):
    topic: str
    followed: Literal[False]


class FollowedOut(Out):
    followed: int = Field(description="How many of the follows are new.")


class ErasedOut(Out):
    id: str
    erased: bool


class CategoryChoiceOut(Out):
    enabled: bool
    required: bool
    channels: dict[str, bool]
    caps: list[CapOut]
    default_caps: list[CapOut]


class QuietHoursOut(Out):
    enabled: bool
    start: str
    end: str
    timezone: str | None
    days: list[str]


class DigestOut(Out):
    enabled: bool
    at: str


class PreferencesOut(Out):
    channels: dict[str, bool]
    categories: dict[str, CategoryChoiceOut]
    caps: list[CapOut]
    quiet_hours: QuietHoursOut
    paused_until: Timestamp | None
    digest: DigestOut
    unsubscribed: bool


class AcceptedOut(Out):
    id: IdText
    status: Literal[NotificationStatus.ACCEPTED]
    recipients: int | None = Field(description="null for a segment or everyone.")


class BatchAcceptedOut(Out):
    items: list[AcceptedOut]


class EventOut(Out):
    status: EventStatus
    at: Timestamp | None
    reason: Reason | None = None
    detail: str | None = None


class DeliveryOut(Out):
    id: IdText
    notification_id: IdText
    recipient: str
    channel: str
    category: str
    status: DeliveryStatus
    reason: Reason | None
    due_at: Timestamp | None
    variant: str | None = Field(default=None, description="Its A/B test variant, if any.")
    error: str | None
    attempts: int
    provider_id: str | None = Field(description="The channel's id for the message (Message-ID).")
    read_at: Timestamp | None
    created_at: Timestamp | None
    events: list[EventOut]


class AbTestOut(Out):
    """An A/B test slice: its settings, when the winner is chosen, and once chosen the
    winner and the slice's figures it was chosen on (per variant: `sent` and the metric's
    count and rate, over deliveries, as `GET /v1/stats?by=variant` counts them)."""

    slice: float
    metric: str
    wait: int = Field(description="Seconds.")
    decide_at: Timestamp | None
    decided_at: Timestamp | None
    winner: str | None
    rule: str | None = Field(
        description="`best`: one variant's metric above every other's; `tie`: several share "
        "the best, above zero, and the heaviest of them then the first listed won; `no_data`: "
        "nothing to go on (a variant nobody of the slice was sent, or no metric above zero), "
        "the heaviest variant then the first listed won."
    )
    figures: dict[str, dict[str, Any]] | None


class NotificationOut(Out):
    id: IdText
    category: str
    status: NotificationStatus
    recipients: int
    send_at: Timestamp | Literal["best"] | None = Field(
        description='When it goes out: a time, "best" (each recipient\'s best hour), or '
        "null for at once."
    )
    latest_at: Timestamp | None = Field(
        default=None, description='With send_at "best": no delivery waits past this.'
    )
    expires_at: Timestamp | None
    collapse_key: str | None
    created_at: Timestamp | None
    cancelled_at: Timestamp | None = Field(
        default=None, description="When `POST /v1/notifications/{id}/cancel` cancelled it."
    )
    counts: dict[DeliveryStatus, int]
    ab_test: AbTestOut | None = Field(default=None, description="Its A/B test slice, if any.")
    deliveries: list[DeliveryOut]
    next: IdText | None = Field(description="Pass as `after` for the next page.")


class DeliveryPage(Out):
    items: list[DeliveryOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


class InboxItemOut(Out):
    delivery_id: IdText
    notification_id: IdText
    category: str
    title: str | None
    body: str | None
    action_url: str | None
    read: bool
    feedback: str | None
    created_at: Timestamp | None


class InboxOut(Out):
    unread: int
    items: list[InboxItemOut]
    next: IdText | None = Field(description="Pass as `before` for the next page.")


class EventRecordedOut(Out):
    id: IdText
    status: DeliveryStatus
    cancelled: list[IdText] = Field(description="Pending copies on other channels, cancelled.")


class FeedbackOut(Out):
    delivery_id: IdText
    rating: str
    comment: str | None
    cap_lowered_to: CapOut | None


class FeedbackCounts(Out):
    up: int
    meh: int
    down: int


class StatsRow(Out):
    category: str | None = None
    channel: str | None = None
    campaign: str | None = Field(default=None, description="By campaign: the campaign's id.")
    campaign_name: str | None = Field(
        default=None, description="By campaign: the campaign's name (null when it has none)."
    )
    variant: str | None = None
    deliveries: int
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int
    suppressed: int
    suppressed_by_reason: dict[str, int] = Field(description="Suppressed deliveries per reason.")
    failed: int
    scheduled: int
    feedback: FeedbackCounts
    unsubscribed: int = Field(
        description="Reached deliveries whose own unsubscribe link (the email's"
        " `List-Unsubscribe`, or `links.unsubscribe` in its copy) was used to unsubscribe."
        " An unsubscribe made elsewhere (the API, the preference center, a link minted"
        " without a message) counts against no message."
    )
    complained: int = Field(
        description="Reached deliveries that drew a complaint: rated 👎, or unsubscribed"
        " from through their own unsubscribe link; a delivery that did both counts once."
    )
    open_rate: float | None
    click_rate: float | None
    conversion_rate: float | None
    unsubscribe_rate: float | None = Field(description="`unsubscribed` per sent.")
    complaint_rate: float | None = Field(
        description="`complained` per sent: 👎 ratings and unsubscribes through the"
        " message's own link, each delivery once."
    )
    feedback_rates: dict[str, float | None] = Field(description="👍/😕/👎 per sent.")
    ci95: dict[str, list[float]] | None = Field(
        default=None,
        description="By variant: each rate's 95% Wilson interval [low, high].",
    )


class StatsOut(Out):
    by: str
    since: Timestamp = Field(alias="from")
    until: Timestamp = Field(alias="to")
    items: list[StatsRow]
    significant: dict[str, bool] | None = Field(
        default=None,
        description="By variant: whether the variants differ in each rate (chi-squared, p < 0.05).",
    )
    p_values: dict[str, float | None] | None = Field(
        default=None, description="By variant: the chi-squared test's p-value per rate."
    )
    ab_test: AbTestOut | None = Field(
        default=None,
        description="By variant of one notification with a test slice: its winner and the "
        "slice's figures when it was chosen (the rows count the rest's deliveries too, "
        "under the winner's name).",
    )


class RevokedOut(Out):
    id: str
    revoked: bool
    links_version: int


class KeyOut(Out):
    """An API key: never its secret, not even its hash."""

    id: int
    name: str
    scopes: list[str]
    created_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class KeyList(Out):
    items: list[KeyOut]


class HealthOut(Out):
    status: str


class ReadyOut(Out):
    status: str
    checks: dict[str, str]
    processes: dict[str, Any] | None = Field(
        default=None, description="What the supervisors run; information, not a condition."
    )


class DocumentOut(RootModel[dict[str, Any]]):
    """A JSON document (the OpenAPI description)."""


class PrometheusText(RootModel[str]):
    """Prometheus text exposition format."""
