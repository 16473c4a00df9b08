"""`tidings up --demo` as a newcomer meets it: the printed curl sends a notification whose
email is sent to a local SMTP sink, which keeps it where the demo says."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.engine.conftest import ROOT, Processes, env_for, wait_for
from tests.support import free_port, raw_headers


def test_the_demo_curl_ends_sent_with_the_email_in_the_sink(
    processes: Processes, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in env_for(processes.settings).items()
        if k not in ("TIDINGS_SMTP_HOST", "TIDINGS_SMTP_PORT", "TIDINGS_PUBLIC_URL")
    }
    out = tmp_path / "up.out"
    with out.open("wb") as stdout, (tmp_path / "up.err").open("wb") as stderr:
        processes.running["up"] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.ops.cli",
                "up",
                "--demo",
                "--port",
                str(port),
                "--processes",
                "1",
            ],
            env={**env, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    printed = wait_for(
        lambda: "lands in" in (text := out.read_text()) and "and follow it" in text and text,
        timeout=60,
    )
    folder = re.search(r"lands in (\S+)/new", printed)
    assert folder, printed
    maildir = Path(folder.group(1))
    assert maildir == (tmp_path / "demo-mail").resolve()

    curl = next(
        line.strip() for line in printed.splitlines() if line.strip().startswith("curl -s -X POST")
    )
    argv = shlex.split(curl)
    url = argv[argv.index("POST") + 1]
    headers = dict(h.split(": ", 1) for h in (argv[i + 1] for i, a in enumerate(argv) if a == "-H"))
    body = argv[argv.index("-d") + 1]
    wait_for(lambda: _healthy(f"http://127.0.0.1:{port}"), timeout=60)
    accepted = httpx.post(url, headers=headers, content=body.encode(), timeout=30)
    assert accepted.status_code == 202, accepted.text
    nid = accepted.json()["id"]

    def finished() -> dict | None:
        view = httpx.get(f"{url}/{nid}", headers=headers, timeout=30).json()
        done = view["deliveries"] and all(
            d["status"] not in ("queued", "sending", "scheduled") for d in view["deliveries"]
        )
        return view if done else None

    view = wait_for(finished, timeout=60)
    by_channel = {d["channel"]: d for d in view["deliveries"]}
    assert by_channel["email"]["status"] == "sent", by_channel["email"]["error"]
    assert by_channel["inapp"]["status"] == "delivered"
    [mail] = list((maildir / "new").iterdir())
    assert (
        dict(raw_headers(mail.read_bytes().replace(b"\n", b"\r\n")))["Message-ID"]
        == (by_channel["email"]["provider_id"])
    )

    # The flash-sale campaign it printed: three steps on the 3-2-1 rhythm, two variants.
    lines = [line.strip() for line in printed.splitlines()]
    campaign_url = next(
        shlex.split(line)[2]
        for line in lines
        if line.startswith("curl -s http") and "/campaigns/" in line
    )
    campaign = httpx.get(campaign_url, headers=headers, timeout=30).json()
    assert campaign["category"] == "promo.flash_sale" and campaign["recipients"] == 3
    assert [(s["offset"], s["status"]) for s in campaign["steps"]] == [
        ("-3d", "scheduled"),
        ("-2d", "scheduled"),
        ("-1h", "scheduled"),
    ]
    step = httpx.get(
        f"{url}/{campaign['steps'][0]['notification_id']}", headers=headers, timeout=30
    ).json()
    assert step["status"] == "accepted"
    # The followers' curl reaches the one recipient who follows the card.
    topic = next(line for line in lines if line.startswith("curl -s -X POST") and "topic" in line)
    topic_argv = shlex.split(topic)
    followers = httpx.post(
        url, headers=headers, content=topic_argv[topic_argv.index("-d") + 1].encode(), timeout=30
    )
    assert followers.status_code == 202, followers.text
    assert followers.json()["recipients"] == 1


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
