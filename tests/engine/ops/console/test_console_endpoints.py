"""The event endpoints page: a paused endpoint shows why, and Resume posts to it again,
over HTTP on both databases and in a real browser against a real receiver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.ops import event_endpoints
from engine.store.db import Database
from engine.store.models import EventBatch, EventEndpoint
from engine.store.states import BatchStatus
from engine.timeutil import now
from tests.browser import CHROMIUM, NEEDS_CHROMIUM
from tests.engine.acceptance.test_event_endpoints import BOTH, Receiver, register
from tests.engine.acceptance.test_event_endpoints import receiver as receiver
from tests.engine.acceptance.test_event_endpoints import settings as settings
from tests.engine.conftest import Processes, recipient, wait_for
from tests.engine.ops.console.conftest import csrf_token
from tests.support import Server

if CHROMIUM.exists():
    from playwright.sync_api import Page, expect

    from tests.engine.ops.console.test_console_browser import fits, sign_in
    from tests.engine.ops.console.test_console_browser import page as page

REASON = "3 failed attempts in a row; last: HTTP 500 from http://127.0.0.1:9/events"


def seed_paused(db: Database) -> int:
    """An endpoint paused after three failures, one batch waiting and one given up."""
    with db.session() as session:
        row = event_endpoints.create(
            session, url="http://127.0.0.1:9/events", types=None, description="billing"
        )
        row.paused_at = now()
        row.pause_reason = REASON
        row.failures = 3
        row.last_error = "HTTP 500 from http://127.0.0.1:9/events"
        session.add(row)
        session.flush()
        assert row.id is not None
        for state in (BatchStatus.PENDING, BatchStatus.FAILED):
            session.add(EventBatch(endpoint_id=row.id, events=[], count=1, status=state))
        return row.id


@BOTH
def test_a_paused_endpoint_shows_why_and_resume_posts_to_it_again(
    console: httpx.Client, admin: httpx.Client, db: Database
) -> None:
    endpoint_id = seed_paused(db)
    page = console.get("/console/endpoints")
    assert page.status_code == 200
    card = page.text[page.text.index(f'id="endpoint-{endpoint_id}"') :]
    assert "http://127.0.0.1:9/events" in card and "billing" in card
    assert "paused" in card and REASON in card
    assert '<dd class="endpoint-failures">3</dd>' in card
    assert '<dd class="endpoint-waiting">1</dd>' in card
    assert '<dd class="endpoint-failed">1</dd>' in card
    assert "delivery.sent, delivery.delivered" in card

    action = f"/console/endpoints/{endpoint_id}/resume"
    assert console.post(action, data={}).status_code == 403  # no CSRF token: nothing changes
    assert admin.get(f"/v1/event-endpoints/{endpoint_id}").json()["paused"] is True

    resumed = console.post(action, data={"csrf_token": csrf_token(page.text)})
    assert resumed.status_code == 303
    shown = admin.get(f"/v1/event-endpoints/{endpoint_id}").json()
    assert shown["paused"] is False and shown["pause_reason"] is None
    assert shown["failures"] == 0
    assert (shown["pending_batches"], shown["failed_batches"]) == (2, 0)
    after = console.get(resumed.headers["Location"])
    assert f"Endpoint {endpoint_id} resumed" in after.text
    assert REASON not in after.text and "active" in after.text

    chinese = console.get("/console/endpoints", params={"lang": "zh-CN"})
    assert "事件推送端点" in chinese.text and "正常" in chinese.text
    missing = console.post(
        "/console/endpoints/999/resume", data={"csrf_token": csrf_token(page.text)}
    )
    assert missing.status_code == 404
    with db.session() as session:
        assert session.get(EventEndpoint, 999) is None


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=NEEDS_CHROMIUM[1].kwargs["reason"])
def test_an_endpoint_paused_by_a_refusing_receiver_shows_its_reason_and_resumes(
    page: Page,
    server: Server,
    admin_key: str,
    admin: httpx.Client,
    pipeline: Processes,
    receiver: tuple[Receiver, str],
    tmp_path: Path,
) -> None:
    endpoint, url = receiver
    endpoint.failing = True  # answers 500 until the endpoint is paused and fixed
    created = register(admin, endpoint, url, types=["recipient.unsubscribed"])
    recipient(admin, "u-1")
    admin.put("/v1/recipients/u-1/preferences", json={"unsubscribed": True}).raise_for_status()

    def paused() -> dict[str, Any] | None:
        shown: dict[str, Any] = admin.get(f"/v1/event-endpoints/{created['id']}").json()
        return shown if shown["paused"] else None

    wait_for(paused, timeout=60)
    endpoint.failing = False

    sign_in(page, server, admin_key)
    page.get_by_role("link", name="Event endpoints", exact=True).click()
    card = page.locator(f"#endpoint-{created['id']}")
    expect(card.locator(".endpoint-state")).to_have_text("paused")
    expect(card.locator(".endpoint-reason")).to_contain_text("3 failed attempts in a row")
    expect(card.locator(".endpoint-reason")).to_contain_text("HTTP 500")
    expect(card.locator(".endpoint-waiting")).to_have_text("1")
    expect(card).to_contain_text(url)
    fits(page)
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=str(tmp_path / f"endpoints-paused-{width}.png"), full_page=True)

    card.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("status")).to_contain_text(f"Endpoint {created['id']} resumed")
    expect(card.locator(".endpoint-state")).to_have_text("active")
    expect(card.locator(".endpoint-reason")).to_have_count(0)
    wait_for(lambda: endpoint.of_type("recipient.unsubscribed"), timeout=60)
    wait_for(
        lambda: admin.get(f"/v1/event-endpoints/{created['id']}").json()["last_success_at"],
        timeout=30,
    )
    page.reload()
    expect(card.locator(".endpoint-success")).not_to_have_text("never")
    expect(card.locator(".endpoint-waiting")).to_have_text("0")
    fits(page)
    page.screenshot(path=str(tmp_path / f"endpoints-resumed-{width}.png"), full_page=True)
