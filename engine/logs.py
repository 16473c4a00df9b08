"""Structured logs: one JSON object a line, carrying notification and delivery ids, and
never a raw email address or phone number (they are masked on the way out)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

EMAIL = re.compile(r"[\w.+-]{1,64}@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"\+\d{7,15}")
# Attributes every LogRecord has; anything else was passed in `extra` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask email addresses and phone numbers."""
    return PHONE.sub("[phone]", EMAIL.sub("[email]", text))


class JsonFormatter(logging.Formatter):
    """`{"at", "level", "logger", "message", ...extra fields}` with personal data masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Set up the root logger for a Tidings process."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "apscheduler", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
