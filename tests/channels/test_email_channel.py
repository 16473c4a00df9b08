"""The email channel against a real SMTP server."""

from __future__ import annotations

import pytest

from channels.email import EmailChannel, message_id
from channels.errors import PermanentError, TransientError
from engine.settings import Settings

UNSUBSCRIBE = "https://tidings.example/u/one-click?t=signed"


@pytest.fixture
def channel(smtp):
    return EmailChannel(
        Settings(
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_username=None,
            smtp_password=None,
            smtp_starttls=False,
            email_from="Tidings <noreply@shop.example>",
            http_timeout=5.0,
        )
    )


def test_a_text_mail_arrives_with_subject_sender_and_body(run, smtp, channel, make_message):
    sent = run(channel.send(make_message(html=None, unsubscribe_url=None)))

    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == "Your card is here"
    assert mail["From"] == "Tidings <noreply@shop.example>"
    assert mail["To"] == "a@example.com"
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().strip() == "Order 456: your gift card code is ready."
    assert smtp.mailbox.envelopes == [("noreply@shop.example", ["a@example.com"])]
    assert "List-Unsubscribe" not in mail
    assert "List-Unsubscribe-Post" not in mail
    assert sent.delivered is False
    assert sent.provider_id == mail["Message-ID"]


def test_an_html_mail_has_text_and_html_alternatives(run, smtp, channel, make_message):
    html = "<p>Order 456: your <b>gift card</b> is ready.</p>"
    run(channel.send(make_message(html=html)))

    [mail] = smtp.mailbox.messages
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(preferencelist=("plain",))
    rich = mail.get_body(preferencelist=("html",))
    assert text is not None and rich is not None
    assert text.get_content().strip() == "Order 456: your gift card code is ready."
    assert rich.get_content().strip() == html


def test_non_ascii_subject_and_body_survive(run, smtp, channel, make_message):
    run(channel.send(make_message(title="限时优惠:原神月卡", body="今晚 8 点开抢", locale="zh-CN")))

    [mail] = smtp.mailbox.messages
    assert mail["Subject"] == "限时优惠:原神月卡"
    assert mail.get_content().strip() == "今晚 8 点开抢"


def test_one_click_unsubscribe_headers_when_there_is_a_link(run, smtp, channel, make_message):
    run(channel.send(make_message(unsubscribe_url=UNSUBSCRIBE)))

    [mail] = smtp.mailbox.messages
    assert mail["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_resent_delivery_keeps_its_message_id(run, smtp, channel, make_message):
    run(channel.send(make_message(delivery_id=42)))
    run(channel.send(make_message(delivery_id=42)))
    run(channel.send(make_message(delivery_id=43)))

    ids = [mail["Message-ID"] for mail in smtp.mailbox.messages]
    assert ids == ["<delivery-42@shop.example>"] * 2 + ["<delivery-43@shop.example>"]


def test_message_id_falls_back_to_a_default_domain():
    assert message_id(5, "noreply") == "<delivery-5@tidings.local>"


def test_a_rejected_recipient_is_a_permanent_failure(run, smtp, channel, make_message):
    smtp.mailbox.reject["gone@example.com"] = "550 5.1.1 No such user here"

    with pytest.raises(PermanentError, match="550"):
        run(channel.send(make_message(address="gone@example.com")))
    assert smtp.mailbox.messages == []


def test_a_temporarily_refused_recipient_is_retried(run, smtp, channel, make_message):
    smtp.mailbox.reject["full@example.com"] = "452 4.2.2 Mailbox full, try later"

    with pytest.raises(TransientError, match="452"):
        run(channel.send(make_message(address="full@example.com")))
    assert smtp.mailbox.messages == []


def test_an_unreachable_relay_is_a_transient_failure(run, free_port, make_message):
    channel = EmailChannel(Settings(smtp_host="127.0.0.1", smtp_port=free_port, http_timeout=2))

    with pytest.raises(TransientError):
        run(channel.send(make_message()))


@pytest.mark.parametrize("address", [None, "", "not-an-address", ("a@example.com",)])
def test_a_missing_or_malformed_address_is_permanent(run, smtp, channel, make_message, address):
    with pytest.raises(PermanentError, match="email address"):
        run(channel.send(make_message(address=address)))
    assert smtp.mailbox.messages == []


def test_a_header_injection_attempt_is_refused(run, smtp, channel, make_message):
    with pytest.raises(PermanentError):
        run(channel.send(make_message(address="a@example.com\r\nBcc: b@example.com")))
    assert smtp.mailbox.messages == []
