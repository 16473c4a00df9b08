"""How the API answers a refusal: a status, and `{"error": {"code", "message", "field"}}`.

The domain's refusals (`engine.errors`) carry no status: each kind gets its status here.
`HttpError` is for what only HTTP can get wrong (a body that is not JSON, a missing API
key, a method the route does not take), raised by the API layer alone.
"""

from __future__ import annotations

from aiohttp import web

from engine.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LinesRefused,
    NotFound,
    TidingsError,
    UnknownRecipients,
)

# The status of each kind of refusal; a subclass answers as its nearest listed base.
STATUSES: dict[type[TidingsError], int] = {
    Invalid: 422,
    NotFound: 404,
    Conflict: 409,
    Forbidden: 403,
}


class HttpError(Exception):
    """A refusal about the HTTP request itself, with its status and a stable code."""

    def __init__(self, message: str, *, status: int, code: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field


class Unauthorized(HttpError):
    """No API key, or one that is unknown or revoked: 401."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, status=401, code="unauthorized", field=field)


class Unavailable(HttpError):
    """A store the answer needs is not answering: 503, worth retrying."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, status=503, code="unavailable", field=field)


def status_of(exc: TidingsError) -> int:
    """The HTTP status a domain refusal answers with (400 for a kind not listed)."""
    for kind in type(exc).__mro__:
        if kind in STATUSES:
            return STATUSES[kind]
    return 400


def error_body(exc: TidingsError | HttpError) -> dict[str, object]:
    """The error document: code, message and field; `unknown` lists unknown recipients,
    `refused` and `lines` an import's refused lines."""
    detail: dict[str, object] = {"code": exc.code, "message": exc.message, "field": exc.field}
    if isinstance(exc, UnknownRecipients):
        detail["unknown"] = exc.unknown
    if isinstance(exc, LinesRefused):
        detail["refused"] = exc.refused
        detail["lines"] = [
            {"line": p.line, "field": p.field, "message": p.message} for p in exc.problems
        ]
    return {"error": detail}


def error_response(
    exc: TidingsError | HttpError, headers: dict[str, str] | None = None
) -> web.Response:
    """`exc` answered as JSON with its status."""
    status = exc.status if isinstance(exc, HttpError) else status_of(exc)
    return web.json_response(error_body(exc), status=status, headers=headers)
