"""Delivery errors: permanent ones are never retried, transient ones are, with backoff."""

from __future__ import annotations


class DeliveryError(Exception):
    """A channel could not deliver a message."""


class PermanentError(DeliveryError):
    """Retrying will not help: a rejected address, a 4xx from the provider, a bad template."""


class TransientError(DeliveryError):
    """Worth retrying: a timeout, a 5xx, a 429; `retry_after` seconds if the provider said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownChannelError(PermanentError, KeyError):
    """No channel is registered under this name; a `KeyError` that reads well."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
