"""The webhook channel against a real HTTP receiver that verifies signatures."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from channels.errors import PermanentError, TransientError
from channels.webhook import WebhookChannel
from engine.settings import Settings


@pytest.fixture
def channel(settings):
    return WebhookChannel(settings)


@pytest.fixture
def sends(run, channel):
    """Send through an opened channel and close it afterwards, like a worker does."""
    run(channel.open())
    yield lambda message: run(channel.send(message))
    run(channel.close())


def test_the_receiver_verifies_the_signature_and_reads_the_payload(
    receiver, sends, secret, make_message
):
    message = make_message(channel="webhook", address=f"{receiver.url}/hooks/tidings?k=1")
    sent = sends(message)

    assert sent.delivered is True
    [request] = receiver.requests
    assert request.path == "/hooks/tidings?k=1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == "msg_42"
    assert Webhook(secret).verify(request.body, request.headers) == {
        "type": "notification",
        "delivery_id": 42,
        "notification_id": 7,
        "recipient": "u-1001",
        "category": "order.delivered",
        "channel": "webhook",
        "locale": "en",
        "title": "Your card is here",
        "body": "Order 456: your gift card code is ready.",
        "action_url": "https://shop.example/orders/456",
        "data": {"order_id": "456", "card": "原神月卡"},
        "created_at": "2026-11-20T10:00:00+00:00",
    }


def test_a_receiver_with_another_secret_rejects_the_signature(receiver, sends, make_message):
    sends(make_message(address=receiver.url))

    [request] = receiver.requests
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==").verify(
            request.body, request.headers
        )


def test_a_resent_delivery_keeps_its_webhook_id(receiver, sends, make_message):
    receiver.reply(500, "try later")
    with pytest.raises(TransientError):
        sends(make_message(delivery_id=42, address=receiver.url))
    sends(make_message(delivery_id=42, address=receiver.url))
    sends(make_message(delivery_id=43, address=receiver.url))

    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert ids == ["msg_42", "msg_42", "msg_43"]


def test_a_server_error_is_transient(receiver, sends, make_message):
    receiver.reply(500, "boom")

    with pytest.raises(TransientError, match="HTTP 500") as failure:
        sends(make_message(address=receiver.url))
    assert failure.value.retry_after is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(receiver, sends, make_message, status):
    receiver.reply(status, "slow down", Retry_After="7")

    with pytest.raises(TransientError) as failure:
        sends(make_message(address=receiver.url))
    assert failure.value.retry_after == 7


def test_a_request_timeout_is_transient(receiver, sends, make_message):
    receiver.reply(408, "too slow")

    with pytest.raises(TransientError, match="HTTP 408"):
        sends(make_message(address=receiver.url))


@pytest.mark.parametrize("status", [400, 404, 410])
def test_a_client_error_is_permanent_and_says_why(receiver, sends, make_message, status):
    receiver.reply(status, "no such hook\n  here")

    with pytest.raises(PermanentError, match=f"HTTP {status}: no such hook here"):
        sends(make_message(address=receiver.url))


def test_a_redirect_is_not_followed(receiver, sends, make_message):
    receiver.reply(302, "", Location=f"{receiver.url}/elsewhere")

    with pytest.raises(PermanentError, match="HTTP 302"):
        sends(make_message(address=receiver.url))
    assert [request.path for request in receiver.requests] == ["/"]


def test_an_unreachable_receiver_is_transient(sends, free_port, make_message):
    with pytest.raises(TransientError):
        sends(make_message(address=f"http://127.0.0.1:{free_port}/hook"))


def test_a_receiver_that_never_answers_is_transient(run, receiver, secret, make_message):
    receiver.hang()
    channel = WebhookChannel(
        Settings(webhook_secret=secret, http_timeout=0.2, outbound_allow="127.0.0.0/8")
    )

    async def send():
        try:
            await channel.send(make_message(address=receiver.url))
        finally:
            await channel.close()

    with pytest.raises(TransientError, match="Timeout"):
        run(send())


@pytest.mark.parametrize("address", [None, "", "not a url", "ftp://example.com/hook"])
def test_a_missing_or_invalid_url_is_permanent(sends, make_message, address):
    with pytest.raises(PermanentError):
        sends(make_message(address=address))


def test_send_without_open_creates_a_session_and_close_releases_it(
    run, receiver, channel, make_message
):
    async def scenario():
        first = await channel.send(make_message(address=receiver.url))
        await channel.close()
        second = await channel.send(make_message(address=receiver.url))
        await channel.close()
        await channel.close()
        return first, second

    first, second = run(scenario())
    assert first.delivered and second.delivered
    assert len(receiver.requests) == 2


def test_the_payload_keeps_what_the_notification_data_holds(receiver, sends, make_message):
    data = {"order_id": "456", "huge": 2**70, "price": 12.5, "nested": {"list": [1, None, "原"]}}
    sends(make_message(address=receiver.url, data=data))

    [request] = receiver.requests
    assert request.json()["data"] == data


def test_data_that_is_not_json_is_permanent_and_nothing_is_sent(receiver, sends, make_message):
    with pytest.raises(PermanentError, match="not JSON-serialisable"):
        sends(make_message(address=receiver.url, data={"when": object()}))
    assert receiver.requests == []
