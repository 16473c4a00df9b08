"""Logs are JSON with ids, and never carry an email address or a phone number."""

from __future__ import annotations

import json
import logging

from engine.logs import JsonFormatter, redact


def test_log_lines_are_json_with_ids_and_no_personal_data() -> None:
    record = logging.LogRecord(
        "tidings.delivery",
        logging.WARNING,
        __file__,
        1,
        "delivery failed: 550 <a.b+c@example.com> rejected, sms +8613800000000",
        None,
        None,
    )
    record.delivery_id = 42
    record.error = "550 5.1.1 <a.b+c@example.com>: no such user"
    line = json.loads(JsonFormatter().format(record))
    assert line["delivery_id"] == 42 and line["level"] == "warning"
    assert "example.com" not in json.dumps(line) and "8613800000000" not in json.dumps(line)
    assert "[email]" in line["message"] and "[phone]" in line["message"]


def test_redact_keeps_ordinary_text() -> None:
    assert redact("planned chunk 3 of notification 17") == "planned chunk 3 of notification 17"
