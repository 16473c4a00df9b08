"""Every status and reason Tidings stores, and the sets the rules read them by, in one place.

The columns of `engine.store.models` are typed with these enums, the pipeline writes
their members, and the API documents their values, so a status spelled one way here is
spelled that way everywhere. They are `StrEnum`s: a member equals its stored text
(`DeliveryStatus.QUEUED == "queued"`) and serialises to it, so the database rows and the
JSON answers hold exactly the strings they always did.

The derived sets below are the only copies of the rules' groupings (what counts as seen,
as waiting, as settled); modules import them rather than listing statuses again.
"""

from __future__ import annotations

from enum import StrEnum


class NotificationStatus(StrEnum):
    """A notification's way through planning: accepted → planning → planned → done, or
    cancelled before it was planned."""

    ACCEPTED = "accepted"
    PLANNING = "planning"
    PLANNED = "planned"
    # Only answered, never stored: planned, and none of its deliveries is still waiting.
    DONE = "done"
    # Cancelled (with its campaign, or on its own) before all of it went out.
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    """A campaign step as answered (never stored): its notification's planning stage,
    `scheduled` while it waits for its time, `skipped` when that time had passed when the
    campaign was created."""

    SCHEDULED = "scheduled"
    SKIPPED = "skipped"
    PLANNING = "planning"
    PLANNED = "planned"
    DONE = "done"
    CANCELLED = "cancelled"


class CampaignStatus(StrEnum):
    """A campaign as answered (never stored), read from its steps: `scheduled` until the
    first goes out, `running`, then `done`; or `cancelled`."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"


class ChunkStatus(StrEnum):
    """A plan chunk's state: pending → planning (claimed by a job) → done, or failed after
    too many attempts, or cancelled with its notification before a job claimed it."""

    PENDING = "pending"
    PLANNING = "planning"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    """A batch of events for a registered endpoint: pending → sending (leased to a job) →
    sent, or failed after too many attempts (and pending again when the endpoint resumes)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class DeliveryStatus(StrEnum):
    """Where one (notification, recipient, channel) stands.

    Held (`scheduled`), handed over (`queued`, `sending`), reached (`sent` … `converted`,
    in the order a recipient gets further), or stopped (`suppressed`, `failed`).
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    READ = "read"
    CLICKED = "clicked"
    CONVERTED = "converted"
    SUPPRESSED = "suppressed"
    FAILED = "failed"


class Engagement(StrEnum):
    """What a platform (or the recipient's inbox) reports a recipient did with a delivery;
    each is also the delivery status it moves the delivery to."""

    OPENED = "opened"
    READ = "read"
    CLICKED = "clicked"
    CONVERTED = "converted"


class EventStatus(StrEnum):
    """One step of a delivery's history: the status it moved to, or `retrying` for an
    attempt that failed transiently and will be made again."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RETRYING = "retrying"
    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    READ = "read"
    CLICKED = "clicked"
    CONVERTED = "converted"
    SUPPRESSED = "suppressed"
    FAILED = "failed"


class Reason(StrEnum):
    """Why a delivery is held (`scheduled`) or was stopped (`suppressed`); see `HOLDS` and
    `SUPPRESSIONS` for which reasons go with which status."""

    # Held until a time …
    SEND_AT = "send_at"
    QUIET_HOURS = "quiet_hours"
    ESCALATION = "escalation"
    DIGEST = "digest"
    BEST_TIME = "best_time"
    CAMPAIGN = "campaign"
    AB_TEST = "ab_test"
    # … held or stopped …
    PAUSED = "paused"
    CAPPED = "capped"
    # … stopped.
    OPTED_OUT = "opted_out"
    UNSUBSCRIBED = "unsubscribed"
    NO_ADDRESS = "no_address"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    COLLAPSED = "collapsed"
    SEEN_ELSEWHERE = "seen_elsewhere"
    CANCELLED = "cancelled"
    CLICKED_EARLIER = "clicked_earlier"
    CONVERTED_EARLIER = "converted_earlier"
    BLOCKED_TARGET = "blocked_target"
    ERASED = "erased"


# --- Delivery statuses, grouped as the rules read them -------------------------------------

# How far along a delivery is, in order; an event never moves a delivery backwards.
PROGRESS: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENDING,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.OPENED,
    DeliveryStatus.READ,
    DeliveryStatus.CLICKED,
    DeliveryStatus.CONVERTED,
)
# Handed to (or through) a channel: caps counted it, a newer copy collapses into it, and
# engagement events may arrive for it (a channel can answer before its receipt is written).
WENT_OUT = frozenset(PROGRESS)
# Held for later; a newer notification with the same collapse key replaces it.
PENDING = frozenset({DeliveryStatus.SCHEDULED})
# Handed over and not yet settled: queued for a deliver job, or being sent by one.
IN_FLIGHT = frozenset({DeliveryStatus.QUEUED, DeliveryStatus.SENDING})
# Not yet sent: what a seen copy on another channel cancels (`seen_elsewhere`).
UNSENT = PENDING | {DeliveryStatus.QUEUED}
# Still waiting for Tidings to act on it; a planned notification with none of these is done.
UNSETTLED = PENDING | IN_FLIGHT
# Tidings is done with it: reached its recipient, suppressed, or failed.
SETTLED = frozenset(DeliveryStatus) - UNSETTLED
# Reached its recipient (a channel took it, or it is in the inbox): the only deliveries a
# recipient can rate, and the ones statistics divide by.
REACHED = frozenset(PROGRESS[PROGRESS.index(DeliveryStatus.SENT) :])
# Arrived where the recipient sees it: what the in-app inbox lists.
ARRIVED = frozenset(PROGRESS[PROGRESS.index(DeliveryStatus.DELIVERED) :])
# The recipient opened, read, clicked or converted: it cancels the other channels' copies.
SEEN = frozenset(DeliveryStatus(e) for e in Engagement)
# The recipient followed the message's link (clicked, or converted after clicking).
CLICKED_THROUGH = frozenset({DeliveryStatus.CLICKED, DeliveryStatus.CONVERTED})
# What the caps count: every delivery that went out, and every one that tried and failed.
COUNTED = WENT_OUT | {DeliveryStatus.FAILED}
# The statuses a notification's counts always show, zero or not.
REPORTED: tuple[DeliveryStatus, ...] = (
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.SCHEDULED,
    DeliveryStatus.QUEUED,
    DeliveryStatus.SUPPRESSED,
    DeliveryStatus.FAILED,
)

# --- Reasons, by the status they explain ---------------------------------------------------

# Why a delivery is `scheduled`.
HOLDS = frozenset(
    {
        Reason.SEND_AT,
        Reason.QUIET_HOURS,
        Reason.PAUSED,
        Reason.CAPPED,
        Reason.ESCALATION,
        Reason.DIGEST,
        Reason.BEST_TIME,
        Reason.CAMPAIGN,
        Reason.AB_TEST,
    }
)
# Why a delivery is `suppressed`.
SUPPRESSIONS = frozenset(Reason) - (HOLDS - {Reason.PAUSED, Reason.CAPPED})
# Holds released by a job of their own rather than by the end of a window: an escalation
# step or a digest is its own message when it comes due.
OWN_MESSAGE = frozenset({Reason.ESCALATION, Reason.DIGEST})

# --- Notifications and plan chunks -----------------------------------------------------------

# Accepted and not yet fully planned: the scheduler re-enqueues these when they stall.
UNPLANNED = frozenset({NotificationStatus.ACCEPTED, NotificationStatus.PLANNING})
# A chunk some job still has to plan.
CHUNK_OPEN = frozenset({ChunkStatus.PENDING, ChunkStatus.PLANNING})

__all__ = [
    "ARRIVED",
    "CHUNK_OPEN",
    "CLICKED_THROUGH",
    "COUNTED",
    "HOLDS",
    "IN_FLIGHT",
    "OWN_MESSAGE",
    "PENDING",
    "PROGRESS",
    "REACHED",
    "REPORTED",
    "SEEN",
    "SETTLED",
    "SUPPRESSIONS",
    "UNPLANNED",
    "UNSENT",
    "UNSETTLED",
    "WENT_OUT",
    "BatchStatus",
    "CampaignStatus",
    "ChunkStatus",
    "DeliveryStatus",
    "Engagement",
    "EventStatus",
    "NotificationStatus",
    "Reason",
    "StepStatus",
]
