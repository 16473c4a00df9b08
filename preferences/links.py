"""Signed per-recipient page links: they expire, bumping a recipient's `links_version`
revokes every link minted before, and each carries the recipient row's random
`links_salt`, so erasing a recipient voids its links even if the id comes back.

An unsubscribe link in a message also names the delivery it came with (`?d=<id>`), so
the unsubscribe is counted against that message. The id sits outside the signature (one
signature per recipient serves all their messages); the page honours it only for a
delivery of the token's own recipient, so it cannot charge anyone else's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from engine.settings import Settings
from engine.timeutil import now

PURPOSES = ("preferences", "inbox", "unsubscribe")
PATHS = {"preferences": "/p/{token}", "inbox": "/inbox/{token}", "unsubscribe": "/u/{token}"}
# The query parameter naming the delivery an unsubscribe link came with.
DELIVERY = "d"


class LinkError(Exception):
    """A token that is tampered with, expired, revoked, or for another page.

    `recipient_id` is known when the signature was genuine (an expired or revoked
    link), so the page that refuses it can still speak the recipient's language.
    """

    def __init__(self, reason: str, *, recipient_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.recipient_id = recipient_id


@dataclass(frozen=True)
class Claims:
    recipient_id: str
    version: int
    purpose: str
    salt: str | None = None

    def revoked(self, version: int, salt: str | None) -> bool:
        """Whether a recipient now at `version` with `salt` no longer honours this link."""
        return self.version != version or self.salt != salt


class Links:
    """Mints and checks page tokens for recipients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Every key verifies (a rotation keeps old links working); the last one signs.
        self._serializer = URLSafeTimedSerializer(settings.signing_keys, salt="tidings.links")

    def token(self, recipient_id: str, version: int, purpose: str, salt: str | None = None) -> str:
        """A token for one page of a recipient at links `version` with its row's `salt`."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        payload: list[object] = [recipient_id, version, purpose]
        if salt is not None:
            payload.append(salt)
        return self._serializer.dumps(payload)

    def path(self, recipient_id: str, version: int, purpose: str, salt: str | None = None) -> str:
        """The page's path with a fresh token, for links between a recipient's own pages."""
        return PATHS[purpose].format(token=self.token(recipient_id, version, purpose, salt))

    def url(
        self,
        recipient_id: str,
        version: int,
        purpose: str,
        salt: str | None = None,
        *,
        delivery_id: int | None = None,
    ) -> str:
        """The page's full URL; `delivery_id` names the message the link travels in."""
        base = self.settings.public_url.rstrip("/")
        url = base + self.path(recipient_id, version, purpose, salt)
        return url if delivery_id is None else f"{url}?{DELIVERY}={delivery_id}"

    def mint(self, recipient_id: str, version: int, salt: str | None = None) -> dict[str, str]:
        """A fresh signed URL per page (`preferences`, `inbox`, `unsubscribe`), as the API's
        `POST /v1/recipients/{id}/links` and the ops console hand them out."""
        return {purpose: self.url(recipient_id, version, purpose, salt) for purpose in PURPOSES}

    def expires_at(self, minted: datetime | None = None) -> datetime:
        """When a link minted at `minted` (default now) stops working."""
        return (minted or now()) + timedelta(seconds=self.settings.link_ttl)

    def check(self, token: str, *, purposes: tuple[str, ...], max_age: int | None = None) -> Claims:
        """The claims of a valid token for one of `purposes`; `LinkError` otherwise.

        Revocation (the version) is checked by the caller against the recipient.
        """
        try:
            raw = self._serializer.loads(token, max_age=max_age or self.settings.link_ttl)
        except SignatureExpired as exc:
            raise LinkError("expired", recipient_id=self._owner(exc.payload)) from None
        except BadSignature:
            raise LinkError("invalid") from None
        if not (isinstance(raw, list) and len(raw) in (3, 4)):
            raise LinkError("invalid")
        recipient_id, version, purpose, *salt = raw
        if purpose not in purposes:
            raise LinkError("wrong_page", recipient_id=str(recipient_id))
        return Claims(str(recipient_id), int(version), str(purpose), str(salt[0]) if salt else None)

    def _owner(self, payload: object) -> str | None:
        """The recipient named by a genuinely signed but expired payload."""
        if not isinstance(payload, bytes):
            return None
        try:
            raw = self._serializer.load_payload(payload)
        except BadSignature:
            return None
        return str(raw[0]) if isinstance(raw, list) and len(raw) in (3, 4) else None
