"""Request documents of sending: a notification and its audience, literal content,
A/B test variants and slices, batches, and engagement events and feedback on deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Discriminator, Field, StrictInt, Tag, model_validator

from engine.errors import FieldError
from engine.schemas.catalog import RecipientBulkItem, SegmentIn, Topic, check_templates
from engine.schemas.common import (
    MAX_TEMPLATE_CHARS,
    ChannelName,
    Duration,
    Key,
    Locale,
    Strict,
    UtcDatetime,
    _storable_data,
    _unique,
)
from engine.store.states import Engagement


class SegmentAudience(Strict):
    segment: SegmentIn


class EveryoneAudience(Strict):
    all: Literal[True]


class TopicAudience(Strict):
    """Every recipient following `topic` when the notification is planned."""

    topic: Topic


def _audience_kind(value: Any) -> str | None:
    # Which form of `to` this is, so an error names the field inside that form.
    if isinstance(value, list):
        return "@ids"
    if isinstance(value, SegmentAudience) or (isinstance(value, dict) and "segment" in value):
        return "@segment"
    if isinstance(value, EveryoneAudience) or (isinstance(value, dict) and "all" in value):
        return "@all"
    if isinstance(value, TopicAudience) or (isinstance(value, dict) and "topic" in value):
        return "@topic"
    return None


def _entry_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "@id"
    if isinstance(value, dict | RecipientBulkItem):
        return "@recipient"
    return None


def _entry_id(entry: str | RecipientBulkItem) -> str:
    return entry if isinstance(entry, str) else entry.id


def _unique_recipients(entries: list[str | RecipientBulkItem]) -> list[str | RecipientBulkItem]:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if (rid := _entry_id(entry)) in seen:
            raise FieldError(str(index), f"recipient {rid!r} is listed twice")
        seen.add(rid)
    return entries


# A recipient by id, or as an object (its id, contact fields and attributes) created or
# updated in the same transaction as the notification.
RecipientEntry = Annotated[
    Annotated[Key, Tag("@id")] | Annotated[RecipientBulkItem, Tag("@recipient")],
    Discriminator(
        _entry_kind,
        custom_error_type="recipient",
        custom_error_message="a recipient id, or an object with its id and contact fields",
    ),
]


RecipientIds = Annotated[
    list[RecipientEntry],
    AfterValidator(_unique_recipients),
    Field(min_length=1, max_length=10_000),
]


# Locations inside `to` carry the form's tag (`@ids`, `@segment`, `@all`); the API's error
# names leave it out (`to.segment.tier.0`).
Audience = Annotated[
    Annotated[RecipientIds, Tag("@ids")]
    | Annotated[SegmentAudience, Tag("@segment")]
    | Annotated[EveryoneAudience, Tag("@all")]
    | Annotated[TopicAudience, Tag("@topic")],
    Discriminator(
        _audience_kind,
        custom_error_type="audience",
        custom_error_message=(
            "to is a list of recipient ids or objects, "
            '{"segment": {...}}, {"topic": "..."} or {"all": true}'
        ),
    ),
]


class ContentIn(Strict):
    """Literal copy instead of the category's templates."""

    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=20_000)
    html: str | None = Field(default=None, max_length=200_000)
    action_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")


class VariantContentIn(Strict):
    """A variant's literal copy, sent as written: each field given replaces the
    notification's, the rest is the notification's own (at least one field)."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    body: str | None = Field(default=None, max_length=20_000)
    html: str | None = Field(default=None, max_length=200_000)
    action_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://\S+$")

    @model_validator(mode="after")
    def _some(self) -> VariantContentIn:
        if not self.model_dump(exclude_none=True):
            raise ValueError("give at least one of title, body, html, action_url")
        return self


Templates = dict[
    ChannelName, dict[Locale, dict[str, Annotated[str, Field(max_length=MAX_TEMPLATE_CHARS)]]]
]


VariantName = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")]


class VariantIn(Strict):
    """One variant of an A/B test: a name, a weight, and what it changes — literal
    `content` (sent as written, never rendered), `data` merged over the notification's,
    `templates` (same shape as the category's, rendered), and `send_after`, a delay before
    its deliveries go (a send-time test). Each field it gives (`title`, `body`, `html`,
    `action_url`) replaces that field only; the rest is the notification's own copy: its
    `content`, else the category's templates for the channel and locale."""

    name: VariantName
    weight: StrictInt = Field(default=1, ge=1, le=10_000)
    content: VariantContentIn | None = None
    data: Annotated[dict[str, Any], AfterValidator(_storable_data)] | None = None
    templates: Templates | None = None
    send_after: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> VariantIn:
        if self.templates:
            check_templates(self.templates)
        return self


def _distinct_variants(values: list[VariantIn]) -> list[VariantIn]:
    seen: set[str] = set()
    for index, variant in enumerate(values):
        if variant.name in seen:
            raise FieldError(f"{index}.name", f"variant {variant.name!r} is named twice")
        seen.add(variant.name)
    return values


Variants = Annotated[list[VariantIn], AfterValidator(_distinct_variants)]


class AbTestIn(Strict):
    """A test slice first: `slice` of the audience (chosen by a hash of the test and the
    recipient, so the same on every retry) is split among the variants by weight; the rest
    wait (`scheduled/ab_test`) until `wait` after the send time, then all get the variant
    with the best `metric` among the slice (a tie, or nothing to go on: the heaviest
    variant, then the first listed; a variant nobody of the slice was sent, or no metric
    above zero, is nothing to go on)."""

    slice: float = Field(gt=0, lt=1, description="The share of the audience tested, 0.1 = 10%.")
    metric: Literal["open_rate", "click_rate", "conversion_rate"] = Field(
        description="What the winner is chosen on, over the slice's deliveries."
    )
    wait: Duration = Field(description="How long the slice runs before the winner is chosen.")


class NotificationIn(Strict):
    """`POST /v1/notifications`."""

    category: Key
    to: Audience
    data: Annotated[dict[str, Any], AfterValidator(_storable_data)] = Field(default_factory=dict)
    content: ContentIn | None = None
    channels: Annotated[list[ChannelName], AfterValidator(_unique)] | None = Field(
        default=None, min_length=1
    )
    send_at: UtcDatetime | Literal["best"] | None = Field(
        default=None,
        description='A time, or "best": each recipient at the local hour they most often '
        "open or read, learned from their history (by `latest_at` at the latest).",
    )
    latest_at: UtcDatetime | None = Field(
        default=None, description='With send_at "best": no delivery waits past this.'
    )
    expires_at: UtcDatetime | None = None
    collapse_key: str | None = Field(default=None, min_length=1, max_length=200)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    variants: Variants | None = Field(
        default=None,
        min_length=2,
        max_length=10,
        description="An A/B test: each recipient gets one variant, by a hash of the test "
        "and their id, in proportion to the weights; recorded on each delivery.",
    )
    ab_test: AbTestIn | None = Field(
        default=None,
        description="With variants: test them on a slice of the audience first, then send "
        "the winner to the rest.",
    )

    @property
    def send_time(self) -> datetime | None:
        """`send_at` when it is a time (not "best")."""
        return self.send_at if isinstance(self.send_at, datetime) else None

    @property
    def recipient_ids(self) -> list[str]:
        """The ids in `to`, whether given as ids or as recipient objects."""
        return [_entry_id(entry) for entry in self.to] if isinstance(self.to, list) else []

    @property
    def upserts(self) -> list[RecipientBulkItem]:
        """Recipients given as objects in `to`: created or updated with the notification."""
        if not isinstance(self.to, list):
            return []
        return [entry for entry in self.to if isinstance(entry, RecipientBulkItem)]

    @model_validator(mode="after")
    def _check(self) -> NotificationIn:
        if self.latest_at is not None and self.send_at != "best":
            raise FieldError("latest_at", 'latest_at goes with send_at "best"')
        if self.send_time and self.expires_at and self.expires_at <= self.send_time:
            raise FieldError("expires_at", "expires_at must be after send_at")
        if self.ab_test is not None:
            if not self.variants:
                raise FieldError("ab_test", "an A/B test slice needs variants")
            if self.send_at == "best":
                raise FieldError("ab_test", 'an A/B test slice cannot go with send_at "best"')
            try:
                (self.send_time or datetime.now(UTC)) + timedelta(seconds=self.ab_test.wait)
            except OverflowError:
                raise FieldError("ab_test.wait", "the winner would be chosen after 9999") from None
            for index, variant in enumerate(self.variants):
                if variant.send_after and variant.send_after >= self.ab_test.wait:
                    raise FieldError(
                        f"variants.{index}.send_after",
                        "a variant of a test slice must go before the winner is chosen "
                        "(send_after shorter than ab_test.wait)",
                    )
        return self


class BatchIn(Strict):
    """`POST /v1/notifications/batch`."""

    notifications: list[NotificationIn] = Field(min_length=1)


class EventIn(Strict):
    """`POST /v1/deliveries/{id}/events`."""

    type: Engagement


class FeedbackIn(Strict):
    """`POST /v1/deliveries/{id}/feedback`."""

    rating: Literal["up", "meh", "down"]
    comment: str | None = Field(default=None, max_length=2000)
