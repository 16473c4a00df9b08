"""SMS and push through a real HTTP gateway."""

from __future__ import annotations

import pytest

from channels.errors import PermanentError, TransientError
from channels.gateway import PushChannel, SmsChannel
from engine.settings import Settings


def gateway_settings(receiver, token="gw-token"):
    return Settings(
        sms_gateway_url=f"{receiver.url}/sms",
        push_gateway_url=f"{receiver.url}/push",
        gateway_token=token,
        http_timeout=2.0,
        outbound_allow="127.0.0.0/8",  # the receiver listens on this machine
    )


def deliver(run, channel, message):
    async def send():
        await channel.open()
        try:
            return await channel.send(message)
        finally:
            await channel.close()

    return run(send())


def test_sms_gateway_receives_the_text_with_the_bearer_token(run, receiver, make_message):
    message = make_message(channel="sms", address="+8613800000000")
    sent = deliver(run, SmsChannel(gateway_settings(receiver)), message)

    assert sent.delivered is False
    [request] = receiver.requests
    assert request.path == "/sms"
    assert request.headers["Authorization"] == "Bearer gw-token"
    assert request.headers["Idempotency-Key"] == "delivery-42"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "to": "+8613800000000",
        "body": "Order 456: your gift card code is ready.",
        "delivery_id": 42,
        "category": "order.delivered",
    }


def test_push_gateway_receives_every_token(run, receiver, make_message):
    message = make_message(channel="push", address=("tok-1", "tok-2"))
    deliver(run, PushChannel(gateway_settings(receiver)), message)

    [request] = receiver.requests
    assert request.path == "/push"
    assert request.headers["Authorization"] == "Bearer gw-token"
    assert request.headers["Idempotency-Key"] == "delivery-42"
    assert request.json() == {
        "tokens": ["tok-1", "tok-2"],
        "title": "Your card is here",
        "body": "Order 456: your gift card code is ready.",
        "action_url": "https://shop.example/orders/456",
        "data": {"order_id": "456", "card": "原神月卡"},
        "delivery_id": 42,
    }


def test_no_token_means_no_authorization_header(run, receiver, make_message):
    message = make_message(channel="push", address="tok-1")
    deliver(run, PushChannel(gateway_settings(receiver, token=None)), message)

    [request] = receiver.requests
    assert "Authorization" not in request.headers
    assert request.json()["tokens"] == ["tok-1"]


@pytest.mark.parametrize(("cls", "name"), [(SmsChannel, "sms"), (PushChannel, "push")])
def test_a_missing_gateway_url_is_permanent(run, make_message, cls, name):
    channel = cls(Settings(sms_gateway_url=None, push_gateway_url=None))

    with pytest.raises(PermanentError, match=f"^{name} gateway is not configured$"):
        deliver(run, channel, make_message(address="+8613800000000"))


def test_a_busy_gateway_is_retried_after_what_it_says(run, receiver, make_message):
    receiver.reply(503, "maintenance", Retry_After="30")

    with pytest.raises(TransientError) as failure:
        deliver(run, SmsChannel(gateway_settings(receiver)), make_message(address="+861380000"))
    assert failure.value.retry_after == 30


def test_a_gateway_refusal_is_permanent(run, receiver, make_message):
    receiver.reply(422, '{"error": "invalid phone number"}')

    with pytest.raises(PermanentError, match=r"HTTP 422.*invalid phone number"):
        deliver(run, SmsChannel(gateway_settings(receiver)), make_message(address="+0"))


@pytest.mark.parametrize(
    ("cls", "address"),
    [(SmsChannel, None), (SmsChannel, ""), (PushChannel, ()), (PushChannel, None)],
)
def test_a_recipient_without_an_address_is_permanent(run, receiver, make_message, cls, address):
    with pytest.raises(PermanentError, match="has no"):
        deliver(run, cls(gateway_settings(receiver)), make_message(address=address))
    assert receiver.requests == []
