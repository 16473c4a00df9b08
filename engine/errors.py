"""Errors the API answers with: JSON `{"error": {"code", "message", "field"}}`."""

from __future__ import annotations


class ApiError(Exception):
    """An error with its HTTP status, a stable code, and the field it is about."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class Invalid(ApiError):
    status = 422
    code = "invalid"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class UnknownRecipients(ApiError):
    """A send naming recipients that do not exist: all of them are listed, in `unknown`,
    so the caller can create them (or send each as an object in `to`)."""

    status = 422
    code = "unknown_recipients"

    def __init__(self, unknown: list[str], *, field: str) -> None:
        shown = ", ".join(repr(rid) for rid in unknown)
        super().__init__(
            f"{len(unknown)} unknown recipient(s): {shown}; create them first, or send each "
            "as an object with its id and contact fields",
            field=field,
        )
        self.unknown = unknown

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "field": self.field,
                "unknown": self.unknown,
            }
        }


class Unavailable(ApiError):
    status = 503
    code = "unavailable"
