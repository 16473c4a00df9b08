"""The durable model: SQLModel tables, the source of truth for everything Tidings knows.

Lists and documents that are read and written whole (contact tokens, tags, caps,
templates, sparse preferences) are JSON columns; what the pipeline filters or
joins on is a real column with an index.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from engine.store.states import (
    BatchStatus,
    ChunkStatus,
    DeliveryStatus,
    EventStatus,
    NotificationStatus,
    Reason,
)
from engine.timeutil import now

# Sequential integer keys: SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSON, nullable=nullable)


def _state(enum: type[StrEnum], length: int) -> Enum:
    """A column of `enum`'s values, stored as VARCHAR(`length`) text (no database enum
    type, no CHECK constraint: adding a member needs no migration). Rows read back as
    members; writing text that is not a member raises `LookupError`."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


def _stamp(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable, index=index)


class Recipient(SQLModel, table=True):
    """A platform user, by the platform's own id, with contact points and segment attributes."""

    __tablename__ = "recipients"

    id: str = Field(primary_key=True, max_length=200)
    # What copy calls the reader (`{{ recipient.name }}`), and the platform's own facts
    # about them (level, region, favourite game) for copy and segments.
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] | None = _json()
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    push_tokens: list[str] | None = _json()
    webhook_url: str | None = Field(default=None, max_length=2000)
    timezone: str | None = Field(default=None, max_length=64)
    locale: str | None = Field(default=None, max_length=16)
    annual_spend: float = Field(default=0, index=True)
    last_active_at: datetime | None = _stamp(index=True)
    tags: list[str] | None = _json()
    # Bumped to revoke every signed page link minted before.
    links_version: int = Field(default=0)
    # Random per row and carried in every link: a recipient erased and created again under
    # the same id never honours the links of the one before (None: rows from before salts).
    links_salt: str | None = Field(default_factory=lambda: secrets.token_hex(8), max_length=32)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Follow(SQLModel, table=True):
    """A recipient following a topic (a card, a game, a brand): a notification sent
    `to: {"topic": …}` reaches every follower."""

    __tablename__ = "follows"
    __table_args__ = (Index("ix_follows_topic", "topic", "recipient_id"),)

    recipient_id: str = Field(primary_key=True, max_length=200)
    topic: str = Field(primary_key=True, max_length=100)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class TopicName(SQLModel, table=True):
    """What a topic is called (`card.genshin-monthly` → "Genshin monthly card"), as the
    platform names it; a topic nobody named shows by its key."""

    __tablename__ = "topics"

    key: str = Field(primary_key=True, max_length=100)
    # One text for every reader, or one per locale (`{"en": …, "zh-CN": …}`).
    name: Any = Field(sa_type=JSON)
    default_locale: str = Field(default="en", max_length=16)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


# The kinds of category a recipient may turn off; transactional ones always reach them.
OPTIONAL_KINDS = frozenset({"promotional", "social"})


class Category(SQLModel, table=True):
    """A kind of notification with its routing, caps, collapse rules and templates."""

    __tablename__ = "categories"

    key: str = Field(primary_key=True, max_length=100)
    # The name in the default locale; `names` holds every locale's when given per locale.
    name: str = Field(max_length=200)
    names: dict[str, str] | None = _json()
    # One text for every reader, or one per locale (`{"en": …, "zh-CN": …}`).
    description: Any = _json()
    kind: str = Field(max_length=20)
    priority: str = Field(max_length=20)
    channels: list[str] = Field(sa_type=JSON)
    required: bool = False
    caps: list[dict[str, int]] = Field(default_factory=list, sa_type=JSON)
    # More caps by the recipient's activity: {"active": [{"count": 2, "per": 604800}], …}.
    caps_by_activity: dict[str, list[dict[str, int]]] | None = _json()
    over_cap: str = Field(default="drop", max_length=10)
    collapse_window: int | None = None
    escalate_after: int | None = None
    # Whether the recipient's global cap counts this category; None: only optional kinds.
    global_cap: bool | None = None
    default_locale: str = Field(default="en", max_length=16)
    templates: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict, sa_type=JSON)
    # The digest message per channel and locale when this category's copy carries one
    # (`engine.pipeline.digests`); the built-in one otherwise.
    digest_templates: dict[str, dict[str, dict[str, str]]] | None = _json()
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Preference(SQLModel, table=True):
    """What a recipient chose, stored sparse: a missing key means the platform default."""

    __tablename__ = "preferences"

    recipient_id: str = Field(primary_key=True, max_length=200)
    channels: dict[str, bool] | None = _json()
    categories: dict[str, dict[str, Any]] | None = _json()
    caps: list[dict[str, int]] | None = _json()
    quiet_hours: dict[str, Any] | None = _json()
    paused_until: datetime | None = _stamp()
    digest: dict[str, Any] | None = _json()
    unsubscribed: bool = False
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Notification(SQLModel, table=True):
    """One request to notify: a category, an audience, content, and timing."""

    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    category: str = Field(max_length=100, index=True)
    audience: dict[str, Any] = Field(sa_type=JSON)
    data: dict[str, Any] | None = _json()
    content: dict[str, Any] | None = _json()
    channels: list[str] | None = _json()
    variants: list[dict[str, Any]] | None = _json()
    send_at: datetime | None = _stamp()
    expires_at: datetime | None = _stamp()
    collapse_key: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)
    queue: str = Field(default="normal", max_length=20)
    # accepted → planning → planned (`done` is only answered, never stored)
    status: NotificationStatus = Field(
        default=NotificationStatus.ACCEPTED, sa_type=_state(NotificationStatus, 20), index=True
    )
    recipients: int = 0
    chunks_total: int | None = None
    chunks_done: int = 0
    campaign_id: int | None = Field(default=None, index=True)
    # `send_at: "best"`: each recipient's deliveries wait for the local hour they most often
    # engage (`engine.pipeline.besttime`), but not past `latest_at`.
    best_time: bool = False
    latest_at: datetime | None = _stamp()
    # An A/B test with a test slice (`engine.pipeline.winner`): its settings, and once
    # decided its winner and figures; `ab_decide_at` is when the rest of the audience, held
    # meanwhile, gets the winner, and `ab_decided_at` when it did.
    ab_test: dict[str, Any] | None = _json()
    ab_decide_at: datetime | None = _stamp(index=True)
    ab_decided_at: datetime | None = _stamp()
    # When a plan job was last handed to the broker; the scheduler retries what stalls.
    enqueued_at: datetime | None = _stamp()
    # Set by `POST /v1/notifications/{id}/cancel`: nothing of it is planned or sent after.
    cancelled_at: datetime | None = _stamp()
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True), index=True)
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Campaign(SQLModel, table=True):
    """A promotion with an event time, reaching its audience in steps before it (the
    "3-2-1" rhythm); each step is a notification of its own (`Notification.campaign_id`)."""

    __tablename__ = "campaigns"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    name: str | None = Field(default=None, max_length=200)
    category: str = Field(max_length=100, index=True)
    audience: dict[str, Any] = Field(sa_type=JSON)
    event_at: datetime = Field(sa_type=DateTime(timezone=True))
    # In the order sent: {"offset": seconds from the event (negative), "notification_id":
    # the step's notification, or None for a step whose time had passed at creation}.
    steps: list[dict[str, Any]] = Field(sa_type=JSON)
    # `Idempotency-Key`: a retry with the same key and request answers this campaign.
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    request_hash: str | None = Field(default=None, max_length=64)
    cancelled_at: datetime | None = _stamp()
    # The step planning now: steps take turns (`engine.store.turns`).
    planning_step: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class PlanChunk(SQLModel, table=True):
    """A slice of a notification's audience (an id range), planned by one job."""

    __tablename__ = "plan_chunks"

    notification_id: int = Field(primary_key=True, sa_type=BigInteger)
    seq: int = Field(primary_key=True)
    lo: str = Field(max_length=200)
    hi: str = Field(max_length=200)
    size: int = 0
    # pending → planning (claimed by a job) → done, or failed after too many attempts, or
    # cancelled with its notification before a job claimed it
    status: ChunkStatus = Field(
        default=ChunkStatus.PENDING, sa_type=_state(ChunkStatus, 10), index=True
    )
    attempts: int = 0
    error: str | None = None
    # The lease of the job planning it: which worker process, until when (engine.store.leases).
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = _stamp()
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Delivery(SQLModel, table=True):
    """One (notification, recipient, channel) with its current status; the inbox reads these."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "recipient_id", "channel", name="uq_delivery"),
        Index("ix_deliveries_status_due", "status", "due_at"),
        Index("ix_deliveries_recipient", "recipient_id", "channel", "id"),
        Index("ix_deliveries_collapse", "recipient_id", "collapse_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    notification_id: int = Field(sa_type=BigInteger)
    recipient_id: str = Field(max_length=200)
    channel: str = Field(max_length=20)
    category: str = Field(max_length=100)
    status: DeliveryStatus = Field(sa_type=_state(DeliveryStatus, 20))
    reason: Reason | None = Field(default=None, sa_type=_state(Reason, 30))
    due_at: datetime | None = _stamp()
    collapse_key: str | None = Field(default=None, max_length=200)
    variant: str | None = Field(default=None, max_length=50)
    locale: str | None = Field(default=None, max_length=16)
    title: str | None = None
    body: str | None = None
    action_url: str | None = None
    attempts: int = 0
    error: str | None = None
    # What the provider knows the sent message by: the email's Message-ID, which
    # bounces and replies quote.
    provider_id: str | None = Field(default=None, max_length=255)
    # The lease of the job sending it: which worker process, until when (engine.store.leases).
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = _stamp()
    read_at: datetime | None = _stamp()
    # The digest this delivery went out in (`Digest`): the one that carries it, or one of
    # the items it lists, which end as the carrier does.
    digest_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Digest(SQLModel, table=True):
    """One digest message: the held `low` notifications of one recipient on one channel,
    listed in one message. At most one per recipient, channel and digest day (`period`:
    the local date the digest time opened), whatever releases race to make it."""

    __tablename__ = "digests"
    __table_args__ = (
        UniqueConstraint("recipient_id", "channel", "period", name="uq_digest_period"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    recipient_id: str = Field(max_length=200, index=True)
    channel: str = Field(max_length=20)
    period: str = Field(max_length=10)
    items: int = 0
    # The delivery that sends it; the others listed follow its outcome.
    carrier_id: int | None = Field(default=None, sa_type=BigInteger)
    locale: str | None = Field(default=None, max_length=16)
    title: str | None = None
    body: str | None = None
    html: str | None = None
    action_url: str | None = None
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class DeliveryEvent(SQLModel, table=True):
    """One step in a delivery's history: queued, sent, read, suppressed (with why)…"""

    __tablename__ = "delivery_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    delivery_id: int = Field(sa_type=BigInteger, index=True)
    status: EventStatus = Field(sa_type=_state(EventStatus, 20))
    reason: Reason | None = Field(default=None, sa_type=_state(Reason, 30))
    detail: str | None = None
    at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Feedback(SQLModel, table=True):
    """A recipient's 👍 / 😕 / 👎 on one delivery; rating again replaces it."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    delivery_id: int = Field(sa_type=BigInteger, unique=True)
    recipient_id: str = Field(max_length=200, index=True)
    category: str = Field(max_length=100, index=True)
    variant: str | None = Field(default=None, max_length=50)
    rating: str = Field(max_length=10)
    comment: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class Unsubscribe(SQLModel, table=True):
    """One time a recipient unsubscribed from everything optional, and the delivery whose
    link they used (None when it came from elsewhere: the API, the preference center, a
    link minted before links named their message). A later resubscribe leaves it be."""

    __tablename__ = "unsubscribes"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    recipient_id: str = Field(max_length=200, index=True)
    delivery_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class ApiKey(SQLModel, table=True):
    """A scoped API key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    scopes: list[str] = Field(sa_type=JSON)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    last_used_at: datetime | None = _stamp()
    revoked_at: datetime | None = _stamp()


class Installation(SQLModel, table=True):
    """This installation's own secrets (page links, webhook signatures), generated once by
    `tidings migrate`."""

    __tablename__ = "installation"

    id: int = Field(default=1, primary_key=True)
    secret_key: str = Field(max_length=200)
    webhook_secret: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class EventEndpoint(SQLModel, table=True):
    """A platform's URL that receives delivery events as signed Standard Webhooks.

    `failures` counts failed posts in a row; past the limit the endpoint is paused
    (`paused_at`, `pause_reason`) until an admin resumes it, its events kept meanwhile.
    """

    __tablename__ = "event_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    types: list[str] = Field(sa_type=JSON)
    description: str | None = Field(default=None, max_length=200)
    # The Standard Webhooks signing secret (`whsec_…`), shown once when created.
    secret: str = Field(max_length=200)
    failures: int = 0
    last_error: str | None = None
    last_success_at: datetime | None = _stamp()
    paused_at: datetime | None = _stamp()
    pause_reason: str | None = None
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class EventOutbox(SQLModel, table=True):
    """An event some endpoint wants, written in the same transaction as the change it
    tells of; the drain job fans it out into batches per endpoint and deletes it."""

    __tablename__ = "event_outbox"
    # Ids are event ids: never given twice, though rows are deleted once fanned out.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    type: str = Field(max_length=40)
    delivery_id: int | None = Field(default=None, sa_type=BigInteger)
    recipient_id: str | None = Field(default=None, max_length=200)
    reason: str | None = Field(default=None, max_length=30)
    detail: str | None = None
    data: dict[str, Any] | None = _json()
    at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))


class EventBatch(SQLModel, table=True):
    """Events for one endpoint, posted as one signed request until it is answered 2xx.

    pending → sending (leased) → sent, or back to pending with `next_attempt_at` after a
    failure, or failed after too many attempts (kept, with the error, for the console).
    """

    __tablename__ = "event_batches"
    # Ids are `webhook-id`s: never given twice, though rows go with their endpoint.
    __table_args__ = (
        Index("ix_event_batches_due", "status", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    endpoint_id: int = Field(index=True)
    events: list[dict[str, Any]] = Field(sa_type=JSON)
    count: int = 0
    status: BatchStatus = Field(default=BatchStatus.PENDING, sa_type=_state(BatchStatus, 10))
    attempts: int = 0
    next_attempt_at: datetime | None = _stamp()
    lease_until: datetime | None = _stamp()
    last_error: str | None = None
    response_status: int | None = None
    created_at: datetime = Field(default_factory=now, sa_type=DateTime(timezone=True))
    sent_at: datetime | None = _stamp()
