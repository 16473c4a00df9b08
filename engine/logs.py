"""Structured logs: one JSON object a line, carrying notification and delivery ids, and
never a raw email address or phone number (they are masked on the way out)."""

from __future__ import annotations

import json
import logging
import re
import threading
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


class TextFormatter(logging.Formatter):
    """`2026-11-30 12:00:00 INFO logger message key=value…`, one line, personal data masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        line = super().format(record)
        if extra:
            line = f"{line} {extra}"
        # A traceback stays one entry: its lines are indented under the message.
        return redact(line.replace("\n", "\n    "))


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Set up the root logger for a Tidings process: every logger (Dramatiq's, aiohttp's,
    Python's warnings and uncaught exceptions in threads included) writes through it in
    one format, `json` or `text` (TIDINGS_LOG_FORMAT)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that set up handlers of their own would write a second format.
    for name in list(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        if logger.handlers and not name.startswith("tidings"):
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(True)
    threading.excepthook = _thread_crashed
    for noisy in ("alembic", "apscheduler", "aiohttp.access", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("tidings").error(
        "thread %s crashed",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
