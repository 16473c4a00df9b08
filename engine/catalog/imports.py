"""Importing recipients from a file, NDJSON or CSV: all of it, or nothing.

The first load of a user base is millions of rows; `POST /v1/recipients/import` and
`tidings import recipients FILE` take one file of any length and land it in two passes:

1. every line is parsed and validated as `PUT /v1/recipients/{id}` would validate it,
   the valid rows spooled to a temporary file in batches and every refused line noted
   (its number, the field, why);
2. only if no line was refused, the rows are upserted in one transaction, a multi-row
   statement per batch, so a reader sees the whole file land at once or not at all.

A recipient listed twice takes both lines' fields, the later line winning where both give
one, as two PUTs in a row would. Keys a line leaves out (an empty CSV cell) keep their
value on a recipient that exists.

NDJSON: one JSON object per line, the fields of `RecipientBulkItem`; blank lines are
skipped. CSV (RFC 4180): a header row naming those fields, then one recipient per row;
`tags` and `push_tokens` separate their entries with `|`.
"""

from __future__ import annotations

import csv
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal

import orjson
from pydantic import ValidationError

from engine.errors import FieldError, LineProblem, LinesRefused
from engine.schemas.catalog import RecipientBulkItem
from engine.schemas.common import json_problem
from engine.store import bulk
from engine.store.db import Database
from engine.store.models import Recipient
from engine.timeutil import now

Format = Literal["ndjson", "csv"]
# A (field, message) for the first problem of a pydantic error, as the API names fields.
Describe = Callable[[ValidationError], tuple[str, str]]
# A (field, message) refusing a valid row for the installation's own reasons, or None.
Check = Callable[[dict[str, Any]], tuple[str, str] | None]

BATCH = 5_000
MAX_PROBLEMS = 100
LIST_SEPARATOR = "|"
LISTS = ("tags", "push_tokens")
FIELDS = tuple(RecipientBulkItem.model_fields)


@dataclass(frozen=True)
class Imported:
    """An import that landed: `recipients` rows upserted from `lines` lines."""

    recipients: int
    lines: int


def _ndjson(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | LineProblem]]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            # orjson refuses what no column stores: NaN, infinities, bad UTF-8, lone
            # surrogates, nesting past 1,024; only a NUL is left to look for.
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield number, LineProblem(number, "line", f"not a JSON object: {exc}")
            continue
        if not isinstance(value, dict):
            yield number, LineProblem(number, "line", "each line is one JSON object")
            continue
        if b"\\u0000" in raw and (problem := json_problem(value, max_depth=8)):
            yield number, LineProblem(number, problem[0] or "line", problem[1])
            continue
        yield number, value


def _cell(name: str, text: str) -> Any:
    if name in LISTS:
        return text.split(LIST_SEPARATOR)
    if name == "annual_spend":
        try:
            return float(text)
        except ValueError:
            return text  # refused by the model, naming the field
    return text


def _csv(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | LineProblem]]:
    texts = (raw.decode("utf-8", errors="surrogateescape") for raw in lines)
    reader = csv.reader(texts, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield 1, LineProblem(1, "line", f"not CSV: {exc}")
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    unknown = [name for name in header if name not in FIELDS]
    if unknown or "id" not in header or len(set(header)) != len(header):
        fields = ", ".join(FIELDS)
        message = f"the header names the columns once each, id among them, from: {fields}"
        yield 1, LineProblem(1, unknown[0] if unknown else "id", message)
        return
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, LineProblem(reader.line_num, "line", f"not CSV: {exc}")
            continue
        number = reader.line_num
        if not cells:
            continue
        if len(cells) != len(header):
            message = f"{len(cells)} cells where the header names {len(header)} columns"
            yield number, LineProblem(number, "line", message)
            continue
        value = {n: _cell(n, c) for n, c in zip(header, cells, strict=True) if c != ""}
        text = "".join(cells)
        # Bytes that are not UTF-8 arrive as lone surrogates, refused here with NULs.
        if "\x00" in text or (not text.isascii() and _surrogates(text)):
            problem = json_problem(value, max_depth=4) or ("line", "not UTF-8")
            yield number, LineProblem(number, problem[0] or "line", problem[1])
            continue
        yield number, value


def _surrogates(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def rows(
    stream: IO[bytes], kind: Format, describe: Describe
) -> Iterator[tuple[int, dict[str, Any] | LineProblem]]:
    """(line number, the recipient's given fields or why the line is refused), line by
    line, for an NDJSON or CSV file read from `stream`."""
    parsed = _ndjson(stream) if kind == "ndjson" else _csv(stream)
    for number, value in parsed:
        if isinstance(value, LineProblem):
            yield number, value
            continue
        try:
            item = RecipientBulkItem.model_validate(value)
        except ValidationError as exc:
            where, message = describe(exc)
            yield number, LineProblem(number, where, message)
            continue
        except FieldError as exc:
            yield number, LineProblem(number, exc.field, exc.message)
            continue
        yield number, item.model_dump(exclude_unset=True)


def import_recipients(
    database: Database,
    stream: IO[bytes],
    kind: Format,
    *,
    describe: Describe,
    check: Check | None = None,
) -> Imported:
    """Validate every line of `stream`, then upsert them all in one transaction.

    `check` may refuse a valid row for reasons of its own (a webhook URL the installation
    does not reach). Raises `ImportRefused` with the refused lines, having written
    nothing, if any line is refused (or if the file has no recipient at all).
    """
    problems: list[LineProblem] = []
    refused = lines = recipients = 0
    with tempfile.TemporaryFile() as spool:
        batch: list[dict[str, Any]] = []
        for number, value in rows(stream, kind, describe):
            lines = number
            if not isinstance(value, LineProblem) and check and (problem := check(value)):
                value = LineProblem(number, *problem)
            if isinstance(value, LineProblem):
                refused += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(value)
                continue
            if refused:
                continue  # nothing will be written: stop keeping rows
            batch.append(value)
            recipients += 1
            if len(batch) >= BATCH:
                pickle.dump(batch, spool, protocol=pickle.HIGHEST_PROTOCOL)
                batch = []
        if refused:
            raise LinesRefused(problems, refused=refused, lines=lines)
        if not recipients:
            empty = [LineProblem(1, "body", "the file holds no recipient")]
            raise LinesRefused(empty, refused=1, lines=lines)
        if batch:
            pickle.dump(batch, spool, protocol=pickle.HIGHEST_PROTOCOL)
        spool.seek(0)
        written = _write(database, _batches(spool))
    return Imported(recipients=written, lines=lines)


def _batches(spool: IO[bytes]) -> Iterator[list[dict[str, Any]]]:
    while True:
        try:
            yield pickle.load(spool)
        except EOFError:
            return


def _write(database: Database, batches: Iterable[list[dict[str, Any]]]) -> int:
    """Upsert every batch in one transaction; the number of distinct rows written."""
    written = 0
    with database.session() as session:
        for batch in batches:
            merged: dict[str, dict[str, Any]] = {}
            for row in batch:
                rid = row["id"]
                merged[rid] = {**merged[rid], **row} if rid in merged else row
            stamp = now()
            salts = os.urandom(8 * len(merged)).hex()
            fixed = {"links_version": 0, "created_at": stamp, "updated_at": stamp}
            groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for i, row in enumerate(merged.values()):
                # Rows keep the model's field order, so the fields given name their group.
                given = tuple(row)
                if row.get("annual_spend") is None:
                    row["annual_spend"] = 0
                row["links_salt"] = salts[16 * i : 16 * i + 16]
                row.update(fixed)
                groups.setdefault(given, []).append(row)
            for given, members in groups.items():
                names = [name for name in given if name != "id"]
                bulk.upsert(session, Recipient, members, update=(*names, "updated_at"))
            written += len(merged)
    return written
