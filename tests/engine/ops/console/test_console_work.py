"""Looking up a recipient and sending a test message from the console, with a real worker
and scheduler delivering what it accepts."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx

from engine.store.db import Database
from tests.engine.acceptance.test_pipeline import ORDER
from tests.engine.conftest import Processes, recipient, send_and_settle, wait_for
from tests.engine.ops.console.conftest import csrf_token
from tests.support import Mailbox

LINK = re.compile(r'<dd><a href="(http[^"]+)"')


def test_a_recipients_page_shows_what_they_chose_apart_from_defaults_and_mints_links(
    console: httpx.Client, admin: httpx.Client, pipeline: Processes, db: Database
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-7", email="u7@example.com", tags=["beta"])
    admin.put(
        "/v1/recipients/u-7/preferences", json={"channels": {"sms": False}}
    ).raise_for_status()
    view = send_and_settle(
        admin,
        category="order.delivered",
        to=["u-7"],
        data={"card": "Monthly card", "order_id": "8841"},
    )
    inapp = next(d for d in view["deliveries"] if d["channel"] == "inapp")
    rated = admin.post(f"/v1/deliveries/{inapp['id']}/feedback", json={"rating": "up"})
    assert rated.status_code == 200, rated.text

    page = console.get("/console/recipients", params={"id": "u-7"}, follow_redirects=True)
    assert page.status_code == 200
    assert "u7@example.com" in page.text and "beta" in page.text
    prefs = page.text[page.text.index('id="preferences"') :]
    sms = prefs[prefs.index(">sms<") :].split("</tr>")[0]
    email = prefs[prefs.index(">email<") :].split("</tr>")[0]
    assert "off" in sms and "chosen" in sms  # what u-7 turned off themselves
    assert "on" in email and "default" in email  # what the platform's default decides
    assert "Your Monthly card is here" in page.text  # the inbox
    assert f"#{inapp['id']}" in page.text[page.text.index('id="feedback"') :]  # 👍 on it
    assert f'id="delivery-{inapp["id"]}"' in page.text

    minted = console.post(
        "/console/recipients/u-7/links", data={"csrf_token": csrf_token(page.text)}
    )
    assert minted.status_code == 200
    links = LINK.findall(minted.text)
    assert len(links) == 3
    opened = console.get(urlsplit(links[0]).path)  # on the installation's public URL
    assert opened.status_code == 200
    assert "Notification preferences" in opened.text

    for rid, status, field in (("nobody", 404, "id"), ("a b", 422, "id")):
        missing = console.get("/console/recipients", params={"id": rid}, follow_redirects=True)
        assert missing.status_code == status and f"Field “{field}”" in missing.text


def test_a_test_send_is_accepted_like_the_apis_and_its_deliveries_settle(
    console: httpx.Client, admin: httpx.Client, pipeline: Processes, smtp: Mailbox
) -> None:
    admin.put("/v1/categories/order.delivered", json=ORDER).raise_for_status()
    recipient(admin, "u-8", email="u8@example.com")
    form = console.get("/console/send")
    assert "order.delivered" in form.text
    token = csrf_token(form.text)
    bad = console.post(
        "/console/send",
        data={"csrf_token": token, "category": "order.delivered", "recipient": "u-8", "data": "{"},
    )
    assert bad.status_code == 400 and "Field “data”" in bad.text
    unknown = console.post(
        "/console/send",
        data={"csrf_token": token, "category": "nope", "recipient": "u-8", "data": "{}"},
    )
    assert unknown.status_code == 422 and "Field “category”" in unknown.text
    sent = console.post(
        "/console/send",
        data={
            "csrf_token": token,
            "category": "order.delivered",
            "recipient": "u-8",
            "data": '{"card": "Monthly card", "order_id": "8841"}',
        },
    )
    assert sent.status_code == 303
    page_url = sent.headers["Location"]
    assert page_url.startswith("/console/messages/")

    def settled_page() -> str | None:
        page = console.get(page_url)
        assert page.status_code == 200
        return None if 'http-equiv="refresh"' in page.text else page.text

    page = wait_for(settled_page, timeout=60)
    deliveries = page[page.index('class="deliveries"') :]
    # The inbox has it; the mail server took the email (no delivery report comes back).
    assert sorted(re.findall(r'<span class="pill (\w+)">', deliveries)) == ["delivered", "sent"]
    assert "u-8" in deliveries
    funnel = page[page.index('id="funnel"') :].split("</table>")[0]
    assert re.findall(r'<td class="n">(\d+)</td>', funnel)[:3] == ["2", "2", "1"]
    wait_for(lambda: any("u8@example.com" in m["To"] for m in smtp.messages))
