"""A/B tests: which variant of a notification's copy (and send time) each recipient gets.
Pure functions.

Assignment hashes the test and the recipient id, so it is the same on every retry, every
replay of a chunk and every step of a campaign (whose steps share one test), and needs no
state; the weights split the hash space. Copy is the notification's with the variant's
`data` merged over the notification's, and each field the variant gives (`title`,
`body`, `html`, `action_url`: its literal `content`, else its `templates` for the
channel) laid over what the notification would have sent without it; a field the
variant does not give comes from the notification (`engine.pipeline.content`).

With a test slice (`ab_test`), only the slice is assigned here; the rest of the audience
waits and gets the winner (`engine.pipeline.winner`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.store.models import Notification

SPACE = 1 << 64


@dataclass(frozen=True)
class Variant:
    """One named variant: its weight, copy overrides and send-time delay (seconds)."""

    name: str
    weight: int = 1
    content: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    templates: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None
    send_after: int | None = None

    @classmethod
    def of(cls, stored: Mapping[str, Any]) -> Variant:
        return cls(
            name=str(stored["name"]),
            weight=int(stored.get("weight", 1)),
            content=stored.get("content"),
            data=stored.get("data"),
            templates=stored.get("templates"),
            send_after=stored.get("send_after"),
        )


def point(test: str, recipient_id: str) -> int:
    """Where a recipient falls in the test's hash space, [0, 2**64)."""
    digest = hashlib.blake2b(f"{test}\x00{recipient_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(test: str, recipient_id: str, weights: Sequence[int]) -> int:
    """The index of the variant a recipient gets in `test`: variant i with probability
    weights[i] / sum(weights), the same answer every time for one (test, recipient)."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("the weights add up to nothing")
    target = point(test, recipient_id) * total >> 64  # in [0, total)
    running = 0
    for index, weight in enumerate(weights):
        running += weight
        if target < running:
            return index
    raise AssertionError("unreachable: target < total")


def in_slice(test: str, recipient_id: str, share: float) -> bool:
    """Whether a recipient is in the test slice of `share` (0.1 = 10%) of the audience.

    Hashed apart from `assign` (another key), so the slice is the same on every retry and
    its members split among the variants by the weights, as the whole audience would."""
    return point(f"{test}\x00slice", recipient_id) < share * SPACE


def test_of(notification: Notification) -> str:
    """The test a notification's variants belong to: its campaign's (shared by every
    step, so a recipient sees one variant throughout), else its own."""
    if notification.campaign_id is not None:
        return f"campaign:{notification.campaign_id}"
    return f"notification:{notification.id}"


def variants_of(notification: Notification) -> list[Variant]:
    return [Variant.of(v) for v in notification.variants or ()]


def pick(notification: Notification, recipient_id: str) -> Variant | None:
    """The variant `recipient_id` gets, or None when the notification has no variants or
    has a test slice (`ab_test`) the recipient is not in: they wait for the winner."""
    found = variants_of(notification)
    if not found:
        return None
    test = notification.ab_test
    if test and not in_slice(test_of(notification), recipient_id, float(test["slice"])):
        return None
    return found[assign(test_of(notification), recipient_id, [v.weight for v in found])]


def named(notification: Notification, name: str | None) -> Variant | None:
    """The variant stored under `name` on a delivery, if the notification still has it."""
    if name is None:
        return None
    return next((v for v in variants_of(notification) if v.name == name), None)


@dataclass(frozen=True)
class CopyInputs:
    """What a delivery's copy is made of, bottom layer first: the notification's literal
    `content` (else the category's templates), the variant's `templates` for a channel,
    then the variant's literal `content`; each layer gives only the fields it has."""

    data: dict[str, Any]
    content: Mapping[str, Any] | None
    templates: Mapping[str, Mapping[str, Mapping[str, str]]]
    overrides: Mapping[str, Any]


def copy_inputs(notification: Notification, variant: Variant | None) -> CopyInputs:
    """The data, literal content and variant layers a delivery renders with."""
    data = dict(notification.data or {})
    if variant is None:
        return CopyInputs(data, notification.content, {}, {})
    data.update(variant.data or {})
    return CopyInputs(
        data, notification.content, variant.templates or {}, dict(variant.content or {})
    )
