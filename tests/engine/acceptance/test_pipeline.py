"""End to end: API → plan → deliver through real channels, with receipts."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import httpx
import pika
import pytest
import redis

from engine.settings import Settings
from tests.engine.conftest import (
    ROOT,
    Processes,
    env_for,
    recipient,
    send,
    settled,
    status_report,
    wait_for,
)
from tests.support import Mailbox, raw_headers

ORDER = {
    "name": "Order delivered",
    "kind": "transactional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "required": True,
    "default_locale": "en",
    "templates": {
        "inapp": {
            "en": {"title": "Your {{ data.card }} is here", "body": "Order {{ data.order_id }}"},
            "zh-CN": {"title": "您的{{ data.card }}已到账", "body": "订单 {{ data.order_id }}"},
        },
        "email": {
            "en": {
                "subject": "Your {{ data.card }} is here",
                "text": "Order {{ data.order_id }}",
                "html": "<p>Order <b>{{ data.order_id }}</b></p>",
            }
        },
    },
}
PROMO: dict[str, Any] = {
    "name": "Flash sales",
    "kind": "promotional",
    "priority": "high",
    "channels": ["inapp", "email"],
    "templates": {"inapp": {"en": {"title": "Sale on {{ data.card }}", "body": "Today only"}}},
}


@pytest.mark.parametrize("broker_url", ["redis", "rabbitmq"], indirect=True)
@pytest.mark.parametrize(
    "database_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_order_reaches_inbox_and_mailbox_with_receipts(
    admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    admin.put("/v1/categories/promo.flash_sale", json=PROMO).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com", locale="zh-CN")

    nid = send(
        admin, category="order.delivered", to=["u-1"], data={"card": "原神月卡", "order_id": "456"}
    )
    view = wait_for(lambda: settled(admin, nid))
    by_channel = {d["channel"]: d for d in view["deliveries"]}
    assert by_channel["inapp"]["status"] == "delivered"
    assert by_channel["email"]["status"] == "sent"
    assert [e["status"] for e in by_channel["inapp"]["events"]] == ["queued", "delivered"]

    mail = wait_for(lambda: smtp.messages)[0]
    assert mail["To"] == "u1@example.com"
    assert mail["Subject"] == "Your 原神月卡 is here"  # no zh-CN email template: falls back to en
    assert "List-Unsubscribe" not in mail  # a required category offers no unsubscribe
    # The receipt keeps the Message-ID the mail went out with, as the relay received it.
    wire = dict(raw_headers(smtp.raw[0]))
    assert by_channel["email"]["provider_id"] == wire["Message-ID"]
    assert wire["Message-ID"] == f"<delivery-{by_channel['email']['id']}@tidings.local>"
    assert by_channel["inapp"]["provider_id"] is None

    inbox = admin.get("/v1/recipients/u-1/inbox").json()
    assert inbox["unread"] == 1
    assert inbox["items"][0]["title"] == "您的原神月卡已到账"

    read = admin.post(f"/v1/deliveries/{by_channel['inapp']['id']}/events", json={"type": "read"})
    assert read.status_code == 200, read.text
    assert admin.get("/v1/recipients/u-1/inbox").json()["unread"] == 0

    # A promotion carries the RFC 8058 one-click unsubscribe headers.
    send(admin, category="promo.flash_sale", to=["u-1"], data={"card": "Steam"})
    wait_for(lambda: len(smtp.raw) == 2)
    promo = dict(raw_headers(smtp.raw[1]))
    # It names its message, so an unsubscribe through it counts against that message.
    message = re.fullmatch(r"<delivery-(\d+)@tidings\.local>", promo["Message-ID"])
    assert message, promo["Message-ID"]
    assert re.fullmatch(
        rf"<http://127\.0\.0\.1:8080/u/[A-Za-z0-9._-]+\?d={message.group(1)}>",
        promo["List-Unsubscribe"],
    )
    assert promo["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    feedback = admin.post(
        f"/v1/deliveries/{by_channel['inapp']['id']}/feedback",
        json={"rating": "down", "comment": "not relevant"},
    )
    assert feedback.status_code == 200, feedback.text
    assert admin.get("/v1/recipients/u-1/inbox").json()["items"][-1]["feedback"] == "down"


@pytest.mark.parametrize("broker_url", ["rabbitmq"], indirect=True)
def test_on_rabbitmq_the_queues_live_there_and_redis_keeps_only_counters(
    admin: httpx.Client, processes: Processes, settings: Settings, redis_client: redis.Redis
) -> None:
    assert settings.broker_url is not None
    assert admin.get("/readyz").json()["checks"] == {"sql": "ok", "redis": "ok", "broker": "ok"}
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-1", email="u1@example.com")
    nid = send(admin, category="order.delivered", to=["u-1"], data={"card": "x", "order_id": "1"})

    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    try:
        channel = connection.channel()

        def waiting() -> int:
            return int(channel.queue_declare("critical", passive=True).method.message_count)

        # No worker runs yet: the plan job waits, durable, in RabbitMQ's critical queue.
        assert wait_for(waiting, timeout=10) == 1
        assert status_report(env_for(settings))["queues"]["critical"]["waiting"] == 1
        table = subprocess.run(
            [sys.executable, "-m", "engine.ops.cli", "status"],
            env=env_for(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"^critical\s+1\s+0\s+-\s+0$", table, re.MULTILINE), table

        processes.worker()
        processes.scheduler()
        view = wait_for(lambda: settled(admin, nid), timeout=30)
        assert {d["status"] for d in view["deliveries"]} == {"delivered", "sent"}
        assert waiting() == 0
    finally:
        connection.close()
    assert redis_client.keys("dramatiq*") == []  # nothing of the queues in Redis
