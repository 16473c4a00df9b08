"""Refusals the domain raises: what is wrong, and the field of the request it is about.

The pipeline, the catalog and the preferences raise these and know nothing of HTTP;
the API answers each kind with its status (`engine.api.errors`), the CLI with a line
naming its option. `code` is the stable, machine-readable name of the refusal.
"""

from __future__ import annotations

from dataclasses import dataclass


class TidingsError(Exception):
    """A refusal: `message` for a person, `code` for a program, `field` (a dotted path
    in the request's terms, like `notifications.2.to`) when one field is at fault."""

    code = "refused"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:  # a refusal more particular than its kind, like `finished`
            self.code = code


class Invalid(TidingsError):
    """The request names something that cannot be: an unknown category, a channel its
    category does not send, data its templates cannot render."""

    code = "invalid"


class FieldError(Invalid, ValueError):
    """An invalid value, raised where the field is known first; a `ValueError` too, so
    a pydantic validator may raise it and keep its field."""

    field: str

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class UnknownRecipients(Invalid):
    """A send naming recipients that do not exist: all of them are listed, in `unknown`,
    so the caller can create them (or send each as an object in `to`)."""

    code = "unknown_recipients"

    def __init__(self, unknown: list[str], *, field: str) -> None:
        shown = ", ".join(repr(rid) for rid in unknown)
        super().__init__(
            f"{len(unknown)} unknown recipient(s): {shown}; create them first, or send each "
            "as an object with its id and contact fields",
            field=field,
        )
        self.unknown = unknown


@dataclass(frozen=True)
class LineProblem:
    """Why one line of an imported file is refused: its number (1 is the first line, a
    CSV's header included), the field in the API's terms (`line` for a line that does not
    parse), and the reason."""

    line: int
    field: str
    message: str


class LinesRefused(Invalid):
    """Lines of an imported file are refused, so nothing was written: the first of them
    in `problems`, how many in all in `refused`, out of `lines` read."""

    code = "invalid_lines"

    def __init__(self, problems: list[LineProblem], *, refused: int, lines: int) -> None:
        super().__init__(
            f"{refused} of {lines} lines are refused (the first {len(problems)} are listed);"
            " nothing was imported",
            field="body",
        )
        self.problems = problems
        self.refused = refused
        self.lines = lines


class IdempotencyMismatch(Invalid):
    """An idempotency key already used for a different request."""

    code = "idempotency_mismatch"


class NotFound(TidingsError):
    """No such notification, delivery, recipient, category or key."""

    code = "not_found"


class Conflict(TidingsError):
    """The thing exists, but its state does not allow what was asked."""

    code = "conflict"


class NotDelivered(Conflict):
    """An event or a rating for a delivery that never reached its recipient."""

    code = "not_delivered"


class Forbidden(TidingsError):
    """The caller may not do this (an API key without the scope it needs)."""

    code = "forbidden"
