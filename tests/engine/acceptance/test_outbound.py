"""A recipient's webhook URL may not point into the private network: refused when written
(422 naming the field) and, for a name that resolves there, when the worker sends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.settings import Settings
from tests.engine.acceptance.test_pipeline_rules import category, channels_of
from tests.engine.conftest import Processes, recipient, send, wait_for
from tests.support import Sink

ROOT = Path(__file__).resolve().parents[3]
TIDINGS = Path(sys.executable).with_name("tidings")
PRIVATE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.8:8080/hook",
    "http://192.168.1.1/",
    "http://100.100.100.200/",
    "http://[::ffff:169.254.169.254]/",
    "http://0x7f.1/",
    "http://localhost:9/hook",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_a_private_webhook_url_is_refused_when_written(admin: httpx.Client, url: str) -> None:
    put = admin.put("/v1/recipients/u-1", json={"webhook_url": url})
    assert put.status_code == 422, put.text
    assert put.json()["error"]["field"] == "webhook_url"
    assert "TIDINGS_OUTBOUND_ALLOW" in put.json()["error"]["message"]
    bulk = admin.post(
        "/v1/recipients/bulk", json={"recipients": [{"id": "a"}, {"id": "b", "webhook_url": url}]}
    )
    assert bulk.status_code == 422 and bulk.json()["error"]["field"] == "recipients.1.webhook_url"
    assert admin.get("/v1/recipients/a").status_code == 404  # all or nothing


def test_public_and_allowed_webhook_urls_are_accepted(admin: httpx.Client) -> None:
    for url in ("https://hooks.example.com/tidings", "http://192.0.2.10:9/sink"):  # allowed here
        put = admin.put("/v1/recipients/u-1", json={"webhook_url": url})
        assert put.status_code == 200 and put.json()["webhook_url"] == url


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """An installation that allows only a documentation network, so the sink on 127.0.0.1
    (which the other tests allow) is private here."""
    return settings.model_copy(
        update={"outbound_allow": "192.0.2.0/24", "sms_gateway_url": None, "push_gateway_url": None}
    )


def test_the_worker_refuses_a_name_that_resolves_to_a_private_address(
    admin: httpx.Client, pipeline: Processes, sink: tuple[Sink, str]
) -> None:
    """A host name passes when written; where it resolves is checked when sending."""
    receiver, url = sink
    port = url.rsplit(":", 1)[1]
    name = socket.gethostname()
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(name, int(port))}
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve here")
    if not resolved <= {"127.0.0.1", "127.0.1.1", "::1"}:
        pytest.skip(f"the host name {name!r} does not resolve to this machine only")
    category(admin, "order.hook", kind="transactional", channels=["webhook"])
    recipient(admin, "rebound", webhook_url=f"http://{name}:{port}/hook/rebound")
    nid = send(admin, category="order.hook", to=["rebound"], content={"title": "hi", "body": "x"})

    def finished() -> dict[str, Any] | None:
        view = admin.get(f"/v1/notifications/{nid}").json()
        done = view["deliveries"] and all(d["status"] == "failed" for d in view["deliveries"])
        return view if done else None

    hook = channels_of(wait_for(finished, timeout=30), "rebound")["webhook"]
    assert hook["attempts"] == 1  # permanent: never retried
    assert "outbound address policy" in hook["error"]
    assert receiver.requests == []


def test_no_process_starts_with_a_private_gateway(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DATABASE_URL"] = f"sqlite:///{tmp_path / 'gw.db'}"
    env["TIDINGS_SMS_GATEWAY_URL"] = "http://169.254.169.254/sms"
    done = subprocess.run(
        [str(TIDINGS), "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "TIDINGS_SMS_GATEWAY_URL" in done.stderr and "link-local" in done.stderr
    env["TIDINGS_OUTBOUND_ALLOW"] = "169.254.169.254/32"
    allowed = subprocess.run(
        [str(TIDINGS), "migrate"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert allowed.returncode == 0, allowed.stderr
