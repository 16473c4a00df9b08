"""Each page link opens only its own page: the unsubscribe link, which every optional email
carries in its headers (and a forwarded email hands on), never leads to the preference
center or the inbox; it offers to email the recipient a preference link instead."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller

from engine.settings import Settings
from tests.preferences.pages.test_pages_http import Forms, body, text
from tests.support import Mailbox, Server, free_port


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server (aiosmtpd) the API's page-link emails go to, and its port."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Mailbox:
    return smtp_server[0]


@pytest.fixture
def settings(settings: Settings, smtp_server: tuple[Mailbox, int]) -> Settings:
    return settings.model_copy(update={"smtp_port": smtp_server[1]})


@pytest.fixture
def links(admin: httpx.Client) -> dict[str, str]:
    """Fresh links of a recipient with an email address, as the API mints them."""
    assert admin.put("/v1/recipients/u-1", json={"email": "ana@example.com"}).status_code == 200
    minted = admin.post("/v1/recipients/u-1/links").json()
    return {k: urlsplit(v).path for k, v in minted.items() if k != "expires_at"}


def _targets(html: str) -> list[str]:
    return re.findall(r'(?:href|action)="([^"]+)"', html)


def test_a_token_opens_no_page_but_its_own(admin: httpx.Client, links: dict[str, str]) -> None:
    token = {purpose: path.rsplit("/", 1)[1] for purpose, path in links.items()}
    pages = {"preferences": "/p/{}", "inbox": "/inbox/{}", "unsubscribe": "/u/{}"}
    for purpose, own in token.items():
        for page, pattern in pages.items():
            status = admin.get(pattern.format(own)).status_code
            assert status == (200 if page == purpose else 403), (purpose, page)


def test_the_unsubscribe_page_leads_to_no_other_page(
    admin: httpx.Client, links: dict[str, str], server: Server
) -> None:
    web = httpx.Client(base_url=server.url, timeout=30)
    for page in (web.get(links["unsubscribe"]), web.post(links["unsubscribe"])):
        assert page.status_code == 200
        for target in _targets(page.text):
            if target.startswith("data:"):
                continue
            path = urlsplit(target).path
            assert path.startswith(("/u/", "/assets/")) or path == "", target


def test_undoing_an_unsubscribe_stays_on_its_page_and_needs_its_form_token(
    admin: httpx.Client, links: dict[str, str], server: Server
) -> None:
    web = httpx.Client(base_url=server.url, timeout=30)
    done = httpx.post(server.url + links["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is True
    forged = web.post(links["unsubscribe"], data={"action": "resubscribe"})
    assert forged.status_code == 403
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is True
    back = next(f for f in Forms(done.text).forms if ("action", "resubscribe") in f["fields"])
    assert urlsplit(back["action"]).path == links["unsubscribe"]
    answer = web.post(back["action"], data=body(back["fields"]), follow_redirects=True)
    assert answer.status_code == 200 and "Optional messages are back on" in text(answer)
    assert admin.get("/v1/recipients/u-1/preferences").json()["unsubscribed"] is False


def _link_in(mail: EmailMessage) -> str:
    content = mail.get_body(("plain",))
    assert content is not None
    found = re.search(r"https?://\S+", content.get_content())
    assert found, content.get_content()
    return found.group(0)


def test_the_unsubscribe_page_emails_a_preference_link_to_the_recipient_only(
    admin: httpx.Client, links: dict[str, str], server: Server, mailbox: Mailbox
) -> None:
    web = httpx.Client(base_url=server.url, timeout=30)
    page = web.get(links["unsubscribe"] + "?lang=zh-CN")
    ask = next(f for f in Forms(page.text).forms if f["action"].split("?")[0].endswith("/link"))
    answered = web.post(ask["action"], data=body(ask["fields"]), follow_redirects=True)
    assert answered.status_code == 200 and "设置链接已发往该邮箱" in text(answered)
    assert mailbox.envelopes == [("noreply@tidings.local", ["ana@example.com"])]
    mail = mailbox.messages[0]
    assert mail["To"] == "ana@example.com" and mail["Subject"] == "您的通知设置"
    url = _link_in(mail)
    assert urlsplit(url).path.startswith("/p/")
    center = web.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert center.status_code == 200 and "lang=zh-CN" in url

    # Asking again at once sends nothing more (a leaked link cannot flood the inbox), and
    # the answer is the same; without a form token nothing is sent at all.
    again = web.post(ask["action"], data=body(ask["fields"]), follow_redirects=True)
    assert again.status_code == 200 and "设置链接已发往该邮箱" in text(again)
    assert web.post(ask["action"], data={}).status_code == 403
    assert len(mailbox.messages) == 1


def test_a_recipient_without_an_email_gets_the_same_answer_and_no_mail(
    admin: httpx.Client, server: Server, mailbox: Mailbox
) -> None:
    admin.put("/v1/recipients/u-2", json={"phone": "+15550001"})
    path = urlsplit(admin.post("/v1/recipients/u-2/links").json()["unsubscribe"]).path
    web = httpx.Client(base_url=server.url, timeout=30)
    ask = next(
        f for f in Forms(web.get(path).text).forms if f["action"].split("?")[0].endswith("/link")
    )
    answered = web.post(ask["action"], data=body(ask["fields"]), follow_redirects=True)
    assert "a link to your preferences is on its way" in text(answered)
    assert mailbox.messages == []
