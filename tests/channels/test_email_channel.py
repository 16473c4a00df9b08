"""The email channel against a real SMTP server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import formataddr, parseaddr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email import EmailChannel, message_id
from channels.errors import PermanentError, TransientError
from engine.settings import Settings
from tests.support import decode_encoded_words, raw_header_block, raw_headers

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


# --- the octets the SMTP server received ------------------------------------------------

# RFC 5322 3.3 date-time as Tidings writes it, e.g. "Mon, 30 Nov 2026 12:09:54 +0000".
DATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"
)
# RFC 5322 3.6.4 msg-id with dot-atom-text on both sides.
ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
MSG_ID = re.compile(rf"<{ATEXT}(\.{ATEXT})*@{ATEXT}(\.{ATEXT})*>")
LONG_LINK = "https://notify.shop.example/u/" + "WyJ1LTEwMDEiLCJ1bnN1YnNjcmliZSJd." * 6 + "sig"


def _wire(smtp) -> tuple[bytes, dict[str, str]]:
    [raw] = smtp.mailbox.raw
    return raw, dict(raw_headers(raw))


def _lines_are_short_and_7bit(raw: bytes) -> None:
    assert raw.isascii(), "8-bit octets on the wire"
    head = raw_header_block(raw)
    assert re.fullmatch(rb"([\x20-\x7e\t]*\r\n)+", head), "a control character in a header"
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998, f"line of {len(line)} octets"
        assert b"\r" not in line and b"\n" not in line, "a bare CR or LF"


def test_list_unsubscribe_is_a_plain_ascii_link_on_the_wire(run, smtp, channel, make_message):
    run(channel.send(make_message(unsubscribe_url=LONG_LINK)))

    raw, headers = _wire(smtp)
    head = raw_header_block(raw)
    assert f"\r\nList-Unsubscribe: <{LONG_LINK}>\r\n".encode() in head
    assert b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in head
    assert b"=?" not in head.split(b"List-Unsubscribe:")[1].split(b"\r\n")[0]
    assert headers["List-Unsubscribe"] == f"<{LONG_LINK}>"
    _lines_are_short_and_7bit(raw)


def test_structured_headers_on_the_wire(run, smtp, channel, make_message):
    sent = run(channel.send(make_message(delivery_id=9001, unsubscribe_url=UNSUBSCRIBE)))

    raw, headers = _wire(smtp)
    _lines_are_short_and_7bit(raw)
    assert headers["Message-ID"] == "<delivery-9001@shop.example>"
    assert MSG_ID.fullmatch(headers["Message-ID"])
    assert sent.provider_id == headers["Message-ID"]
    assert DATE.fullmatch(headers["Date"]), headers["Date"]
    stamped = datetime.strptime(headers["Date"], "%a, %d %b %Y %H:%M:%S %z")
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 60
    assert headers["From"] == "Tidings <noreply@shop.example>"
    assert headers["To"] == "a@example.com"
    assert headers["Subject"] == "Your card is here"
    assert headers["MIME-Version"] == "1.0"
    names = [name for name, _ in raw_headers(raw)]
    for single in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe"):
        assert names.count(single) == 1, single


def test_non_ascii_subject_and_names_are_rfc_2047_encoded_words(run, smtp, make_message):
    channel = EmailChannel(
        Settings(
            smtp_host="127.0.0.1", smtp_port=smtp.port, email_from="卡卡商城 <noreply@shop.example>"
        )
    )
    title = "限时优惠:原神月卡今晚 8 点开抢,先到先得 — 卡卡 says hi to everyone reading this"
    run(
        channel.send(make_message(title=title, address="小明 <ming@example.com>", body="今晚 8 点"))
    )

    raw, headers = _wire(smtp)
    _lines_are_short_and_7bit(raw)
    assert decode_encoded_words(headers["Subject"]) == title
    name, address = headers["From"].rsplit(" ", 1)
    assert (decode_encoded_words(name), address) == ("卡卡商城", "<noreply@shop.example>")
    name, address = headers["To"].rsplit(" ", 1)
    assert (decode_encoded_words(name), address) == ("小明", "<ming@example.com>")
    assert smtp.mailbox.envelopes == [("noreply@shop.example", ["ming@example.com"])]


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=300
)
_TOKEN = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=900
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(title=_TEXT, name=_TEXT, token=_TOKEN)
def test_any_subject_name_and_link_arrive_readable(
    run, smtp_controller, make_message, title, name, token
):
    smtp_controller.mailbox.reset()
    sender = formataddr((name, "noreply@shop.example"))
    channel = EmailChannel(
        Settings(smtp_host="127.0.0.1", smtp_port=smtp_controller.port, email_from=sender)
    )
    link = f"https://notify.example/u/{token}"
    run(channel.send(make_message(title=title, unsubscribe_url=link)))

    [raw] = smtp_controller.mailbox.raw
    headers = dict(raw_headers(raw))
    _lines_are_short_and_7bit(raw)
    assert decode_encoded_words(headers["Subject"]) == title
    assert headers["List-Unsubscribe"] == f"<{link}>"
    shown, address = (
        headers["From"].rpartition(" ")[::2] if " <" in headers["From"] else ("", headers["From"])
    )
    assert address.strip("<>") == "noreply@shop.example"
    assert _unquote(decode_encoded_words(shown)) == parseaddr(sender)[0]


def _unquote(display: str) -> str:
    """An RFC 5322 quoted-string's content, by hand."""
    if len(display) >= 2 and display[0] == display[-1] == '"':
        return re.sub(r"\\(.)", r"\1", display[1:-1])
    return display
