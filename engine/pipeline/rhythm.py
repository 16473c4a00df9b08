"""The rules of a campaign's rhythm. Pure functions.

A campaign reaches its audience in steps before an event (a sale starts, a card is back):
by default the playbook's "3-2-1", three days, two days and one hour before. Each step
is a notification of its own; these rules say when the steps go, what a step does to the
earlier ones still waiting, and who is left out of the next one: a recipient who clicked
or converted on any step gets no further steps (`clicked_earlier`, or `converted_earlier`
when they converted). Steps that fall due together (the scheduler was down) never reach
a recipient twice at once: the latest step due speaks for the campaign, and the others
end `collapsed` (`too_late`; the check is `planning._later_step_due`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.pipeline.policy import Decision
from engine.store.states import CLICKED_THROUGH, REACHED, SEEN, DeliveryStatus, Reason
from engine.timeutil import format_duration, parse_duration

DAY = 86400
# The playbook's "3-2-1": three days, two days and one hour before the event.
DEFAULT_STEPS = (-3 * DAY, -2 * DAY, -3600)
MAX_STEPS = 10
# A recipient whose delivery of one step reached these gets no further steps.
ENGAGED = CLICKED_THROUGH
# The funnel's stages, each a delivery status and every status past it.
FUNNEL: dict[str, frozenset[DeliveryStatus]] = {
    "sent": REACHED,
    "opened": SEEN,
    "clicked": CLICKED_THROUGH,
    "converted": frozenset({DeliveryStatus.CONVERTED}),
}
# Why a step is left out for a recipient who engaged on another: the farthest they went.
STOPPED = frozenset({Reason.CLICKED_EARLIER, Reason.CONVERTED_EARLIER})


def stopped_by(statuses: Iterable[str]) -> Reason:
    """The reason a recipient's other steps stop, given the statuses of their deliveries
    that engaged (`ENGAGED`): `converted_earlier` if one converted, else `clicked_earlier`."""
    if any(s == DeliveryStatus.CONVERTED for s in statuses):
        return Reason.CONVERTED_EARLIER
    return Reason.CLICKED_EARLIER


def parse_offset(value: str | int) -> int:
    """A step as seconds before the event: `"-3d"`, `"-90m"` or a negative number of
    seconds. Raises `ValueError` for anything at or after the event."""
    if isinstance(value, bool):
        raise ValueError("a step is a duration before the event, like '-1h'")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        if not text.startswith("-"):
            raise ValueError(f"{value!r} is not before the event: write it as '-1h', '-3d'")
        seconds = -parse_duration(text[1:])
    if seconds >= 0:
        raise ValueError("a step goes before the event: a negative offset like '-1h'")
    return seconds


def format_offset(seconds: int) -> str:
    """`-259200` → `"-3d"`."""
    return f"-{format_duration(-seconds)}" if seconds < 0 else format_duration(seconds)


def step_times(event_at: datetime, steps: Sequence[int]) -> list[datetime]:
    """When each step goes: the event time plus its (negative) offset."""
    return [event_at + timedelta(seconds=offset) for offset in steps]


@dataclass(frozen=True)
class Earlier:
    """A delivery of an earlier step of the same campaign to the same recipient."""

    id: int
    channel: str
    status: str


def step_fate(
    decisions: Sequence[Decision], earlier: Iterable[Earlier]
) -> tuple[list[Decision], list[int]]:
    """A step for one recipient, given their deliveries of the campaign's earlier steps.

    A recipient who clicked or converted on any earlier step gets nothing more: every
    delivery that would go or wait is `suppressed/clicked_earlier` (or
    `converted_earlier`, `stopped_by`). Otherwise earlier
    steps still waiting (held by quiet hours, a pause, a cap) are replaced by this one, so
    a recipient never gets two steps at once. Returns the decisions and the ids of the
    earlier waiting deliveries to end `suppressed/collapsed`.
    """
    before = list(earlier)
    engaged = [e.status for e in before if e.status in ENGAGED]
    if engaged:
        reason = stopped_by(engaged)
        return [
            d
            if d.status == DeliveryStatus.SUPPRESSED
            else Decision(d.channel, DeliveryStatus.SUPPRESSED, reason)
            for d in decisions
        ], []
    return list(decisions), [e.id for e in before if e.status == DeliveryStatus.SCHEDULED]


def too_late(decisions: Sequence[Decision]) -> list[Decision]:
    """A step planned after a later step of its campaign already reached the recipient
    (both fell due together): the later one speaks for the campaign, so whatever of this
    one would go or wait is `suppressed/collapsed`."""
    return [
        d
        if d.status == DeliveryStatus.SUPPRESSED
        else Decision(d.channel, DeliveryStatus.SUPPRESSED, Reason.COLLAPSED)
        for d in decisions
    ]
