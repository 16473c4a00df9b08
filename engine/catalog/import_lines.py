"""An imported file's lines, read a batch at a time into validated recipients.

NDJSON: one JSON object per line, the fields of `RecipientBulkItem`; blank lines are
skipped. CSV (RFC 4180): a header row naming those fields, then one recipient per row;
`tags` and `push_tokens` separate their entries with `|`, and an empty cell leaves its
field out.

Every line is validated by the model `PUT /v1/recipients/{id}` validates with, a batch of
lines in one call; a batch in which any line is refused is validated again line by line,
so each refused line is named by its number, with the field and the message a `PUT` of it
would answer.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import methodcaller
from typing import IO, Any, Literal

import orjson
from pydantic import TypeAdapter, ValidationError

from engine.errors import FieldError, LineProblem
from engine.schemas.catalog import RecipientBulkItem
from engine.schemas.common import json_problem

Format = Literal["ndjson", "csv"]
# A (field, message) for the first problem of a pydantic error, as the API names fields.
Describe = Callable[[ValidationError], tuple[str, str]]

# NDJSON bytes read for one batch (~7,000 lines of 150 bytes), CSV rows in one batch.
BATCH_BYTES = 1 << 20
BATCH_ROWS = 5_000
LIST_SEPARATOR = "|"
FIELDS = tuple(RecipientBulkItem.model_fields)
ITEMS = TypeAdapter(list[RecipientBulkItem])
DECODE = methodcaller("decode", "utf-8", "surrogateescape")


@dataclass
class Batch:
    """A batch of a file's lines: the recipients they give, each with the number of its
    line in `numbers` (1 is the first line, a CSV's header included), and the lines
    refused, in line order; `last` is the number of its last line that is not blank
    (0 for none)."""

    last: int = 0
    numbers: list[int] = field(default_factory=list)
    items: list[RecipientBulkItem] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)


def batches(stream: IO[bytes], kind: Format, describe: Describe) -> Iterator[Batch]:
    """The lines of an NDJSON or CSV file read from `stream`, a batch at a time."""
    return _ndjson(stream, describe) if kind == "ndjson" else _csv(stream, describe)


def _ndjson(stream: IO[bytes], describe: Describe) -> Iterator[Batch]:
    read = 0
    while lines := stream.readlines(BATCH_BYTES):
        first, read = read + 1, read + len(lines)
        if all(map(bytes.strip, lines)):
            yield _ndjson_batch(list(range(first, read + 1)), lines, describe)
        else:
            given = [(n, raw) for n, raw in enumerate(lines, first) if raw.strip()]
            numbers = [number for number, _ in given]
            yield _ndjson_batch(numbers, [raw for _, raw in given], describe)


def _ndjson_batch(numbers: list[int], raws: list[bytes], describe: Describe) -> Batch:
    """The NDJSON lines `raws`, numbered `numbers`, none of them blank."""
    batch = Batch(numbers[-1] if numbers else 0)
    try:
        # orjson refuses what no column stores: NaN, infinities, bad UTF-8, lone
        # surrogates, nesting past 1,024; only a NUL is left to look for.
        values = [orjson.loads(raw) for raw in raws]
    except orjson.JSONDecodeError:
        values = []
    if (
        len(values) == len(raws)
        and set(map(type, values)) <= {dict}
        and b"\\u0000" not in b"".join(raws)
    ):
        _validate(batch, numbers, values, describe)
        return batch
    # Some line is not a JSON object: parse them one by one, naming those.
    parsed: list[int] = []
    objects: list[dict[str, Any]] = []
    for number, raw in zip(numbers, raws, strict=True):
        value = _ndjson_line(number, raw)
        if isinstance(value, LineProblem):
            batch.problems.append(value)
        else:
            parsed.append(number)
            objects.append(value)
    _validate(batch, parsed, objects, describe)
    return batch


def _ndjson_line(number: int, raw: bytes) -> dict[str, Any] | LineProblem:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return LineProblem(number, "line", f"not a JSON object: {exc}")
    if not isinstance(value, dict):
        return LineProblem(number, "line", "each line is one JSON object")
    if b"\\u0000" in raw and (problem := json_problem(value, max_depth=8)):
        return LineProblem(number, problem[0] or "line", problem[1])
    return value


def _validate(
    batch: Batch, numbers: list[int], values: list[dict[str, Any]], describe: Describe
) -> None:
    """Validate `values` (parsed lines, by number) into `batch`: all at once, or, if any
    is refused, one by one to name each refused line as a `PUT` of it would."""
    try:
        batch.items += ITEMS.validate_python(values)
        batch.numbers += numbers
        return
    except (ValidationError, FieldError):
        pass
    for number, value in zip(numbers, values, strict=True):
        try:
            item = RecipientBulkItem.model_validate(value)
        except ValidationError as exc:
            batch.problems.append(LineProblem(number, *describe(exc)))
        except FieldError as exc:
            batch.problems.append(LineProblem(number, exc.field, exc.message))
        else:
            batch.items.append(item)
            batch.numbers.append(number)
    batch.problems.sort(key=lambda problem: problem.line)


def _csv(stream: Iterable[bytes], describe: Describe) -> Iterator[Batch]:
    reader = csv.reader(map(DECODE, stream), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield Batch(1, problems=[LineProblem(1, "line", f"not CSV: {exc}")])
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    unknown = [name for name in header if name not in FIELDS]
    if unknown or "id" not in header or len(set(header)) != len(header):
        fields = ", ".join(FIELDS)
        message = f"the header names the columns once each, id among them, from: {fields}"
        yield Batch(1, problems=[LineProblem(1, unknown[0] if unknown else "id", message)])
        return
    batch, numbers, values = Batch(), [], []
    while True:
        try:
            for cells in reader:
                if not cells:
                    continue
                batch.last = reader.line_num
                value = _csv_row(batch.last, header, cells)
                if isinstance(value, LineProblem):
                    batch.problems.append(value)
                    continue
                numbers.append(batch.last)
                values.append(value)
                if len(values) == BATCH_ROWS:
                    _validate(batch, numbers, values, describe)
                    yield batch
                    batch, numbers, values = Batch(), [], []
            break
        except csv.Error as exc:
            batch.last = reader.line_num
            batch.problems.append(LineProblem(batch.last, "line", f"not CSV: {exc}"))
    _validate(batch, numbers, values, describe)
    yield batch


def _csv_row(number: int, header: list[str], cells: list[str]) -> dict[str, Any] | LineProblem:
    """A CSV row's given fields, or why it is refused."""
    if len(cells) != len(header):
        message = f"{len(cells)} cells where the header names {len(header)} columns"
        return LineProblem(number, "line", message)
    value: dict[str, Any] = dict(zip(header, cells, strict=True))
    if "" in cells:  # an empty cell leaves its field out
        value = {name: cell for name, cell in value.items() if cell}
    if (tags := value.get("tags")) is not None:
        value["tags"] = tags.split(LIST_SEPARATOR)
    if (tokens := value.get("push_tokens")) is not None:
        value["push_tokens"] = tokens.split(LIST_SEPARATOR)
    if (spend := value.get("annual_spend")) is not None:
        try:
            value["annual_spend"] = float(spend)
        except ValueError:
            value["annual_spend"] = spend  # the model refuses the text, naming the field
    text = "".join(cells)
    # Bytes that are not UTF-8 arrive as lone surrogates, refused here with NULs.
    if "\x00" in text or (not text.isascii() and _surrogates(text)):
        problem = json_problem(value, max_depth=4) or ("line", "not UTF-8")
        return LineProblem(number, problem[0] or "line", problem[1])
    return value


def _surrogates(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
