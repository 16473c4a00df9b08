"""Importing recipients from a file, NDJSON or CSV: all of it, or nothing.

The first load of a user base is millions of rows; `POST /v1/recipients/import` and
`tidings import recipients FILE` take one file of any length and land it in one
transaction. Its lines are validated a batch at a time as `PUT /v1/recipients/{id}`
would validate them (`engine.catalog.import_lines`), and each batch of valid rows is
upserted as soon as it is read (`engine.store.loads`). Once a line is refused, the rest
of the file is only validated, to name every refused line, and the transaction is rolled
back: a reader sees the whole file land at once, or nothing of it.

A recipient listed twice takes both lines' fields, the later line winning where both give
one, as two PUTs in a row would. Keys a line leaves out (an empty CSV cell) keep their
value on a recipient that exists.

On SQLite the import holds the database's write turn from its first batch to its end
(about 2.5 seconds for 200,000 recipients); other writers wait for it meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import IO, Any

from engine.catalog.import_lines import Describe, Format, batches
from engine.errors import LineProblem, LinesRefused
from engine.schemas.catalog import RecipientBulkItem
from engine.store.db import Database
from engine.store.loads import Load
from engine.store.models import Recipient
from engine.timeutil import now

__all__ = ["Check", "Describe", "Format", "Imported", "import_recipients"]

# A (field, message) refusing a valid row for the installation's own reasons, or None.
Check = Callable[[RecipientBulkItem], tuple[str, str] | None]

MAX_PROBLEMS = 100
# The fields a line may give.
GIVEN = (
    "id",
    "name",
    "attributes",
    "email",
    "phone",
    "push_tokens",
    "webhook_url",
    "timezone",
    "locale",
    "last_active_at",
    "tags",
    "annual_spend",
)
assert set(GIVEN) == set(RecipientBulkItem.model_fields)


@dataclass(frozen=True)
class Imported:
    """An import that landed: `recipients` rows upserted from `lines` lines."""

    recipients: int
    lines: int


def import_recipients(
    database: Database,
    stream: IO[bytes],
    kind: Format,
    *,
    describe: Describe,
    check: Check | None = None,
) -> Imported:
    """Validate every line of `stream` and upsert them all in one transaction.

    `check` may refuse a valid row for reasons of its own (a webhook URL the installation
    does not reach). Raises `LinesRefused` with the refused lines, having written
    nothing, if any line is refused (or if the file has no recipient at all).
    """
    problems: list[LineProblem] = []
    refused = lines = recipients = written = 0
    with database.session() as session, Load(session, Recipient) as load:
        for batch in batches(stream, kind, describe):
            lines = max(lines, batch.last)
            found = batch.problems
            if check:
                more = [
                    LineProblem(number, *problem)
                    for number, item in zip(batch.numbers, batch.items, strict=True)
                    if (problem := check(item))
                ]
                found = sorted(found + more, key=lambda problem: problem.line) if more else found
            refused += len(found)
            problems += found[: MAX_PROBLEMS - len(problems)]
            recipients += len(batch.items)
            if batch.items and not refused:  # once a line is refused nothing is written
                written += _write(load, batch.items)
        # Raised inside the session: what was written rolls back.
        if refused:
            raise LinesRefused(problems, refused=refused, lines=lines)
        if not recipients:
            empty = [LineProblem(1, "body", "the file holds no recipient")]
            raise LinesRefused(empty, refused=1, lines=lines)
    return Imported(recipients=written, lines=lines)


def _write(load: Load, items: list[RecipientBulkItem]) -> int:
    """Upsert a batch of valid lines, in groups of the same given fields (each sets only
    those on a stored recipient); the number of distinct recipients written."""
    if len(set(map(attrgetter("id"), items))) < len(items):
        items = _folded(items)
    given = list(map(attrgetter("model_fields_set"), items))
    fields = list(map(vars, items))
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    if given.count(given[0]) == len(given):  # the usual file: every line gives the same
        groups[frozenset(given[0])] = fields
    else:
        for names, values in zip(given, fields, strict=True):
            groups.setdefault(frozenset(names), []).append(values)
    stamp = now()
    for names, rows in groups.items():
        count = len(rows)
        columns = {name: list(map(itemgetter(name), rows)) for name in GIVEN if name in names}
        # A new recipient without annual_spend (or given null) has spent 0.
        spent = columns.get("annual_spend", [None] * count)
        columns["annual_spend"] = [spend or 0 for spend in spent]
        salts = os.urandom(8 * count).hex()
        columns |= {
            "links_version": [0] * count,
            "links_salt": [salts[i : i + 16] for i in range(0, 16 * count, 16)],
            "created_at": [stamp] * count,
            "updated_at": [stamp] * count,
        }
        update = [name for name in GIVEN if name in names and name != "id"]
        load.upsert(columns, update=[*update, "updated_at"])
    return len(items)


def _folded(items: list[RecipientBulkItem]) -> list[RecipientBulkItem]:
    """Lines of the same recipient folded into one, in the place of its first: the
    fields of each, the later line's value where both give one."""
    merged: dict[str, RecipientBulkItem] = {}
    for item in items:
        if (earlier := merged.get(item.id)) is None:
            merged[item.id] = item
            continue
        given = earlier.model_fields_set | item.model_fields_set
        values = {n: getattr(item if n in item.model_fields_set else earlier, n) for n in given}
        merged[item.id] = RecipientBulkItem.model_construct(given, **values)
    return list(merged.values())
