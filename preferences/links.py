"""Signed per-recipient page links: they expire, and bumping a recipient's
`links_version` revokes every link minted before."""

from __future__ import annotations

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from engine.settings import Settings

PURPOSES = ("preferences", "inbox", "unsubscribe")
PATHS = {"preferences": "/p/{token}", "inbox": "/inbox/{token}", "unsubscribe": "/u/{token}"}


class LinkError(Exception):
    """A token that is tampered with, expired, revoked, or for another page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    recipient_id: str
    version: int
    purpose: str


class Links:
    """Mints and checks page tokens for recipients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._serializer = URLSafeTimedSerializer(settings.secret_key, salt="tidings.links")

    def token(self, recipient_id: str, version: int, purpose: str) -> str:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown link purpose {purpose!r}")
        return self._serializer.dumps([recipient_id, version, purpose])

    def url(self, recipient_id: str, version: int, purpose: str) -> str:
        token = self.token(recipient_id, version, purpose)
        return self.settings.public_url.rstrip("/") + PATHS[purpose].format(token=token)

    def check(self, token: str, *, purposes: tuple[str, ...], max_age: int | None = None) -> Claims:
        """The claims of a valid token for one of `purposes`; `LinkError` otherwise.

        Revocation (the version) is checked by the caller against the recipient.
        """
        try:
            raw = self._serializer.loads(token, max_age=max_age or self.settings.link_ttl)
        except SignatureExpired:
            raise LinkError("expired") from None
        except BadSignature:
            raise LinkError("invalid") from None
        if not (isinstance(raw, list) and len(raw) == 3):
            raise LinkError("invalid")
        recipient_id, version, purpose = raw
        if purpose not in purposes:
            raise LinkError("wrong_page")
        return Claims(str(recipient_id), int(version), str(purpose))
