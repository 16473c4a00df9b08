"""Schemathesis against the live API: generated requests from the published document,
with a `read`, a `send` and an `admin` key, must never get a 5xx nor an answer off its
documented status, media type, headers or schema.

Bounded and repeatable: a fixed seed, deterministic generation, a few examples per
operation, one worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
EXAMPLES_PER_OPERATION = 6


@pytest.fixture
def catalog(admin: httpx.Client) -> httpx.Client:
    """Something for generated reads to find: a category, recipients, a notification."""
    admin.put(
        "/v1/categories/orders",
        json={
            "name": "Orders",
            "kind": "service",
            "priority": "normal",
            "channels": ["inapp"],
            "templates": {"inapp": {"en": {"title": "Order {{ data.order }}"}}},
        },
    ).raise_for_status()
    for rid in ("u-1", "u-2"):
        admin.put(f"/v1/recipients/{rid}", json={"email": f"{rid}@example.com"}).raise_for_status()
    admin.post(
        "/v1/notifications", json={"category": "orders", "to": ["u-1"], "data": {"order": 7}}
    ).raise_for_status()
    return admin


def run(server: Server, key: str, report: Path) -> dict[str, Any]:
    """One schemathesis run; its figures from the NDJSON event log."""
    done = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261130",
            "--generation-deterministic",
            "--workers",
            "1",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "20",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        cwd=report.parent,
        timeout=600,
        check=False,
        text=True,
    )
    assert report.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    requests, server_errors, failures, paths = 0, [], [], set()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        if "ScenarioFinished" not in event:
            continue
        recorder = event["ScenarioFinished"]["recorder"]
        for interaction in (recorder.get("interactions") or {}).values():
            requests += 1
            paths.add(interaction["request"]["uri"].split("?")[0].split("/v1/", 1)[-1])
            response = interaction.get("response") or {}
            if response.get("status_code", 0) >= 500:
                request = interaction["request"]
                server_errors.append(f"{request['method']} {request['uri']}")
        for checks in (recorder.get("checks") or {}).values():
            for check in checks:
                if check["status"] == "failure":
                    failure = check["failure_info"]["failure"]
                    failures.append(
                        f"{failure['operation']}: {failure['title']}: {failure['message'][:300]}"
                    )
    return {
        "requests": requests,
        "5xx": server_errors,
        "failures": sorted(set(failures)),
        "paths": paths,
    }


# Three runs over every operation, on a machine that may be busy.
@pytest.mark.timeout(900)
def test_generated_requests_get_no_5xx_and_no_answer_off_its_schema(
    server: Server, catalog: httpx.Client, api_keys: dict[str, str], tmp_path: Path
) -> None:
    figures = {
        scope: run(server, api_keys[scope], tmp_path / f"{scope}.ndjson")
        for scope in ("read", "send", "admin")
    }
    print(
        {scope: (f["requests"], len(f["5xx"]), len(f["failures"])) for scope, f in figures.items()}
    )
    # The message log and its cancel are among the operations exercised.
    admin_paths = figures["admin"]["paths"]
    assert {"notifications", "recipients"} <= admin_paths, sorted(admin_paths)
    assert any(p.startswith("deliveries/") and p.count("/") == 1 for p in admin_paths)
    assert any(p.startswith("notifications/") and p.endswith("/cancel") for p in admin_paths)
    for scope, found in figures.items():
        assert found["requests"] > 200, (scope, found)
        assert not found["5xx"], (scope, found["5xx"][:10])
        assert not found["failures"], (scope, found["failures"][:10])
