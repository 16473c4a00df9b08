"""`POST /v1/recipients/import`: a whole user base in one request, NDJSON or CSV.

The body streams to a temporary file (never whole in memory) up to
`TIDINGS_MAX_IMPORT_BYTES`, then `engine.catalog.imports` validates every line and lands
them all in one transaction, or none of them with every refused line named.
"""

from __future__ import annotations

import tempfile
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError
from pydantic import ValidationError

from channels.outbound import outbound_policy
from engine.api.context import DB, SETTINGS, scope
from engine.api.contract import operation
from engine.api.errors import HttpError
from engine.api.middleware import validation_error
from engine.catalog.imports import Check, Format, import_recipients
from engine.schemas.answers import ImportedOut
from engine.schemas.catalog import RecipientBulkItem
from engine.settings import Settings

routes = web.RouteTableDef()

# Media types an import is read as; parameters such as `charset` are ignored (UTF-8).
MEDIA_TYPES: dict[str, Format] = {
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "text/csv": "csv",
}
# Spooled in memory up to this many bytes, then on disk.
IN_MEMORY = 8 * 1024 * 1024
READ = 256 * 1024


def describe(exc: ValidationError) -> tuple[str, str]:
    """A pydantic error's field and message, as the API words them."""
    error = validation_error(exc)
    return error.field or "line", error.message


def outbound_check(settings: Settings) -> Check:
    """Refuse a row whose webhook URL points where this installation does not send."""
    policy = outbound_policy(settings)

    def check(item: RecipientBulkItem) -> tuple[str, str] | None:
        url = item.webhook_url
        if url and (reason := policy.refusal(url)):
            return "webhook_url", f"webhook_url is not reachable: {reason}"
        return None

    return check


@routes.post("/v1/recipients/import")
@scope("recipients")
@operation(
    responses={200: ImportedOut},
    upload={"application/x-ndjson": RecipientBulkItem, "text/csv": None},
    errors={
        415: "The body is neither NDJSON (`application/x-ndjson`) nor CSV (`text/csv`).",
        422: "Some lines are refused (`invalid_lines`): each is listed in `lines` with its"
        " number, field and reason, and nothing was imported.",
    },
)
async def import_recipients_file(request: web.Request) -> dict[str, Any]:
    """Import recipients from an NDJSON or CSV file: every line, or none.

    Each line is a recipient as `PUT /v1/recipients/{id}` takes it, with its `id`:
    one JSON object per line (`application/x-ndjson`), or a CSV header row naming the
    fields, then one row per recipient, `|` between the entries of `tags` and
    `push_tokens`, an empty cell leaving a field out (`text/csv`). Up to
    `TIDINGS_MAX_IMPORT_BYTES` (1 GiB) a request, with no cap on rows. If any line is
    refused, nothing is written and the answer lists the refused lines (the first 100).
    """
    settings = request.app[SETTINGS]
    kind = MEDIA_TYPES.get(request.content_type)
    if kind is None:
        raise HttpError(
            f"send NDJSON (application/x-ndjson) or CSV (text/csv), not {request.content_type!r}",
            status=415,
            code="unsupported_media_type",
            field="Content-Type",
        )
    with tempfile.SpooledTemporaryFile(max_size=IN_MEMORY) as spool:
        size = 0
        try:
            while chunk := await request.content.read(READ):
                size += len(chunk)
                if size > settings.max_import_bytes:
                    raise HttpError(
                        f"an import is at most {settings.max_import_bytes} bytes; split the file",
                        status=413,
                        code="too_large",
                        field="body",
                    )
                spool.write(chunk)
        except (RequestPayloadError, PayloadEncodingError):  # the encoding does not decode
            encoding = request.headers.get("Content-Encoding", "")
            raise HttpError(
                f"the body does not decode as its Content-Encoding ({encoding!r}) says",
                status=400,
                code="invalid_body",
                field="Content-Encoding",
            ) from None
        spool.seek(0)
        db = request.app[DB]
        # Refused lines raise `LinesRefused`: a 422 listing them, nothing written.
        done = await db.run(
            import_recipients, db, spool, kind, describe=describe, check=outbound_check(settings)
        )
    return {"upserted": done.recipients, "lines": done.lines}
