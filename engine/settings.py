"""One `Settings` object for the whole process, read from `TIDINGS_*` variables."""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import langcodes
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|m|h)\s*$")
RATE_SECONDS = {"s": 1, "m": 60, "h": 3600}
TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class NoSecret(RuntimeError):
    """Neither the setting nor a generated secret: the database is not migrated
    (`engine.store.installation`)."""


class Settings(BaseSettings):
    """Everything an operator can tune; built once and passed in."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")

    database_url: str = "sqlite:///tidings.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Where the queues live: unset, they are in Redis at `redis_url`; `amqp://user:pass@host/vhost`
    # puts them in RabbitMQ (durable, they survive a broker restart) and leaves Redis the counters.
    broker_url: str | None = None
    # Tidings' own keys (caps, dedupe, rate limits) live in another database number than
    # Dramatiq's, whose maintenance runs KEYS over its whole database.
    counters_redis_db: int = 1
    # Every Redis key (and Dramatiq's queues) starts with this; by default one derived
    # from the database URL, so installations sharing a Redis never share counters.
    redis_prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # Signs page links and forms. Unset: the installation's own random secret, generated
    # by `tidings migrate` and kept in the database. To rotate, set the new one here and
    # the old ones in `secret_key_previous` (comma-separated): links they signed still open.
    secret_key: str | None = None
    secret_key_previous: str = ""
    # Where links in messages and pages point. When unset, `tidings api`/`up` use the
    # address they listen on (and pass it to their workers); a worker started on its own
    # assumes the API's default address.
    public_url: str = "http://127.0.0.1:8080"

    # API limits
    max_body_bytes: int = 1_048_576
    max_bulk_recipients: int = 1000
    # `POST /v1/recipients/import` streams to a temporary file: no cap on rows, only bytes.
    max_import_bytes: int = Field(default=1 << 30, ge=1)
    max_batch_notifications: int = 100
    page_size: int = 100

    # Platform defaults for preferences
    default_quiet_start: str = "22:00"
    default_quiet_end: str = "08:00"
    default_timezone: str = "UTC"
    default_locale: str = "en"
    global_cap_per_day: int = 5
    digest_at: str = "20:00"

    # The platform's own face on the recipient's pages (see preferences/pages/branding.py):
    # a logo is a path Tidings serves (/assets/…), an https URL or a data: image.
    brand_name: str = Field(default="Tidings", min_length=1, max_length=60)
    brand_logo_url: str | None = Field(default=None, pattern=r"^(https://|/|data:image/)\S+$")
    brand_color: str = Field(default="#4f46e5", pattern=r"^#[0-9a-fA-F]{6}$")
    brand_support_url: str | None = Field(default=None, pattern=r"^(https?://|mailto:)\S+$")

    # Segments
    whale_spend: float = 5000
    dolphin_spend: float = 500
    active_days: int = 7
    sleeping_days: int = 30

    # Pipeline
    plan_chunk_size: int = 1000
    # Chunks of one notification queued at a time: each finished chunk queues the next,
    # so its deliveries go out between chunks instead of behind the whole audience.
    plan_ahead: int = Field(default=8, ge=1)
    deliver_chunk_size: int = 500
    link_ttl: int = Field(default=30 * 86400, description="seconds a signed page link stays valid")
    console_session_ttl: int = Field(
        default=8 * 3600, ge=60, description="seconds an ops console sign-in lasts"
    )
    stall_after: int = 300
    # A just-accepted notification is the API's to enqueue; the scheduler steps in after this.
    enqueue_grace: int = 10
    # Seconds between the scheduler's looks while it hands work over; after a look that
    # found nothing, it sleeps until the earliest due time in SQL, at most
    # `scheduler_idle_interval` seconds (recovery of stalled or lost work included).
    scheduler_interval: float = Field(default=1.0, gt=0)
    scheduler_idle_interval: float = Field(default=5.0, gt=0)
    # An idle worker sleeps until an enqueue wakes it; it looks at its queues unprompted
    # at most every this many ms (capped at a third of `broker_heartbeat_timeout`), which
    # bounds the wait only for work put back without a wake-up (taken back from a worker
    # that died).
    worker_timeout_ms: int = Field(default=5000, ge=1)
    # Recovery. A claim is a lease: the channel's timeout (`http_timeout`) plus
    # `lease_margin` seconds for a delivery, `chunk_lease` seconds for a plan chunk. Every
    # worker process renews a liveness key in Redis every `heartbeat_interval` seconds,
    # kept for `liveness_ttl`; a row whose lease ran out and whose holder's key is gone
    # (the process died) is taken back at once. `stall_after` stays the last resort.
    lease_margin: float = Field(default=5.0, ge=0)
    chunk_lease: float = Field(default=20.0, gt=0)
    heartbeat_interval: float = Field(default=2.0, gt=0)
    liveness_ttl: float = Field(default=10.0, gt=0)
    # Dramatiq puts a worker's unacknowledged messages back on their queue once the worker
    # has been silent this many seconds (Dramatiq's own default is 60).
    broker_heartbeat_timeout: float = Field(default=15.0, gt=0)
    # While SQL or Redis does not answer, a job (or a batch's receipts) waits, backing off
    # up to 5 s, for at most this many seconds instead of spending its retries.
    outage_wait: float = Field(default=300.0, ge=0)
    # Seconds to wait for a PostgreSQL connection before calling the database unreachable.
    sql_connect_timeout: int = Field(default=5, ge=1)
    delivery_max_attempts: int = 5
    # A plan chunk that fails this many times (not counting outages) is given up: `failed`.
    plan_max_attempts: int = Field(default=3, ge=1)
    retry_backoff_base: float = 1.0
    # Each worker group serves its processes' metrics on metrics_host:metrics_port, or the
    # next free port when another group on the host has it.
    metrics_port: int = Field(default=9191, ge=1, le=65535)
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")
    worker_processes: int = 2
    # Jobs are CPU-bound Python under one GIL per process, and a deliver job already sends
    # its batch concurrently: a second thread overlaps one job's provider waits with
    # another's work (~20% more webhooks), but halves the CPU a job holding the SQLite write
    # turn gets, which doubles how long critical writes wait for it. Scale with processes.
    # Measured in the README.
    worker_threads: int = 1
    worker_queues: str = "critical,normal,bulk,events"

    # Delivery events pushed to event endpoints: a failed batch is retried after
    # base × 1, 4, 16… seconds (at most an hour), `events_max_attempts` times in all; an
    # endpoint that fails `events_pause_after` posts in a row is paused.
    events_retry_base: float = Field(default=5.0, gt=0)
    events_max_attempts: int = Field(default=10, ge=1)
    events_pause_after: int = Field(default=5, ge=1)

    # Channels
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    email_from: str = "Tidings <noreply@tidings.local>"
    # Signs webhooks (Standard Webhooks, `whsec_…`). Unset: the installation's own random
    # secret, generated by `tidings migrate`, kept in the database, printed by
    # `tidings webhook-secret`.
    webhook_secret: str | None = None
    sms_gateway_url: str | None = None
    push_gateway_url: str | None = None
    gateway_token: str | None = None
    http_timeout: float = 10.0
    # Webhooks and gateways reach only public addresses, plus these comma-separated
    # addresses or CIDR networks (`channels.outbound`), e.g. 10.1.0.0/16 for an internal gateway.
    outbound_allow: str = ""

    # Per-channel rate limits, e.g. TIDINGS_RATE_SMS=100/s
    rate_email: str | None = None
    rate_sms: str | None = None
    rate_push: str | None = None
    rate_webhook: str | None = None

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "amqp://", "amqps://")):
            raise ValueError("a broker URL starts with redis://, rediss://, amqp:// or amqps://")
        return value or None

    @field_validator("default_quiet_start", "default_quiet_end", "digest_at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not TIME_OF_DAY.match(value):
            raise ValueError(f"{value!r} is not a time of day like '22:00' (00:00-23:59)")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone like 'Asia/Shanghai'") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if not langcodes.tag_is_valid(value):
            raise ValueError(f"{value!r} is not a BCP 47 language tag like 'en' or 'zh-CN'")
        return value

    @field_validator("rate_email", "rate_sms", "rate_push", "rate_webhook")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None and not RATE.match(value):
            raise ValueError("a rate looks like 100/s, 600/m or 1000/h")
        return value

    @model_validator(mode="after")
    def _outbound(self) -> Settings:
        from channels.outbound import OutboundPolicy

        try:
            policy = OutboundPolicy(self.outbound_allow)
        except ValueError as exc:
            raise ValueError(f"outbound_allow: {exc}") from None
        for name in ("sms_gateway_url", "push_gateway_url"):
            url = getattr(self, name)
            if url and (reason := policy.refusal(url)):
                raise ValueError(f"TIDINGS_{name.upper()}: {reason}")
        return self

    def rate_limit(self, channel: str) -> tuple[int, int] | None:
        """(count, window seconds) for a channel, or None when unlimited."""
        value = getattr(self, f"rate_{channel}", None)
        if not value:
            return None
        match = RATE.match(value)
        assert match is not None
        return int(match.group(1)), RATE_SECONDS[match.group(2)]

    @property
    def signing_keys(self) -> list[str]:
        """Keys that verify signed links, oldest first; the last one signs new ones."""
        if not self.secret_key:
            raise RuntimeError("no secret key: run `tidings migrate` or set TIDINGS_SECRET_KEY")
        previous = [k.strip() for k in self.secret_key_previous.split(",") if k.strip()]
        return [*previous, self.secret_key]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
