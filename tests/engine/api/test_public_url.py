"""Links point where the API listens: `tidings up --port P` without TIDINGS_PUBLIC_URL
mints page links and List-Unsubscribe targets on P, and says so at start."""

from __future__ import annotations

import subprocess
import sys

import httpx

from engine.catalog import keys
from engine.store.db import Database
from tests.engine.acceptance.test_pipeline import PROMO
from tests.engine.conftest import ROOT, Processes, env_for, recipient, wait_for
from tests.support import Mailbox, free_port, raw_headers


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_on_another_port_mints_links_on_that_port(
    processes: Processes, db: Database, smtp: Mailbox
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in env_for(processes.settings).items() if k != "TIDINGS_PUBLIC_URL"}
    log = open(processes.logs / "up.log", "ab")  # noqa: SIM115 (closed below)
    processes.running["up"] = subprocess.Popen(
        [sys.executable, "-m", "engine.ops.cli", "up", "--port", str(port), "--processes", "1"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    wait_for(lambda: _healthy(base), timeout=60)
    assert f"links use {base}" in processes.log("up")

    with db.session() as session:
        admin_key = keys.create(session, name="up", scopes=["admin"])[1]
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as api:
        api.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
        recipient(api, "u-1", email="u1@example.com")
        links = api.post("/v1/recipients/u-1/links")
        assert links.status_code in (200, 201), links.text
        for name in ("preferences", "inbox", "unsubscribe"):
            if name in links.json():
                assert links.json()[name].startswith(f"{base}/"), links.json()
        sent = api.post(
            "/v1/notifications",
            json={"category": "promo.flash_sale", "to": ["u-1"], "data": {"card": "Steam"}},
        )
        assert sent.status_code == 202, sent.text

        raw = wait_for(lambda: smtp.raw, timeout=60)[0]
    target = dict(raw_headers(raw))["List-Unsubscribe"]
    assert target.startswith(f"<{base}/u/"), target
    # The link in the header works against the API that is listening.
    assert httpx.post(target.strip("<>"), data={"List-Unsubscribe": "One-Click"}).status_code == 200
