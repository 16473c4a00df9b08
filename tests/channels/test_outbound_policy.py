"""Webhooks and gateways reach only public addresses unless an operator allows more: the
address a name resolves to is checked when the connection is made (DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from pydantic import ValidationError

from channels.errors import PermanentError
from channels.gateway import SmsChannel
from channels.outbound import OutboundPolicy
from channels.webhook import WebhookChannel
from engine.settings import Settings


def _send(run, channel, message):
    async def send():
        try:
            return await channel.send(message)
        finally:
            await channel.close()

    return run(send())


def _local_name() -> str:
    """A host name (not `localhost`) that resolves to this machine, as a rebound name would."""
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
    except OSError:
        pytest.skip(f"the host name {name!r} does not resolve here")
    if any(ipaddress.ip_address(info[4][0]).is_global for info in infos):
        pytest.skip(f"the host name {name!r} resolves to a public address here")
    return name


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "localhost"])
def test_a_webhook_to_a_loopback_address_is_refused_before_connecting(
    run, receiver, secret, make_message, host
):
    port = receiver.url.rsplit(":", 1)[1]
    channel = WebhookChannel(Settings(webhook_secret=secret, http_timeout=2.0))
    with pytest.raises(PermanentError, match=r"TIDINGS_OUTBOUND_ALLOW|outbound address policy"):
        _send(run, channel, make_message(address=f"http://{host}:{port}/hook"))
    assert receiver.requests == []


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending(
    run, receiver, secret, make_message
):
    port = receiver.url.rsplit(":", 1)[1]
    url = f"http://{_local_name()}:{port}/hook"
    refused = WebhookChannel(Settings(webhook_secret=secret, http_timeout=2.0))
    with pytest.raises(PermanentError, match="outbound address policy"):
        _send(run, refused, make_message(address=url))
    assert receiver.requests == []

    allowed = WebhookChannel(
        Settings(webhook_secret=secret, http_timeout=2.0, outbound_allow="127.0.0.0/8, ::1")
    )
    assert _send(run, allowed, make_message(address=url)).delivered is True
    assert [request.path for request in receiver.requests] == ["/hook"]


def test_a_private_gateway_is_refused_when_configured_and_when_sending(run, receiver, make_message):
    with pytest.raises(ValidationError, match="TIDINGS_SMS_GATEWAY_URL"):
        Settings(sms_gateway_url="http://169.254.169.254/latest/meta-data")
    with pytest.raises(ValidationError, match="TIDINGS_PUSH_GATEWAY_URL"):
        Settings(push_gateway_url="http://10.0.0.8/push")
    with pytest.raises(ValidationError, match="outbound_allow"):
        Settings(outbound_allow="10.0.0.0/33")
    assert Settings(sms_gateway_url="http://10.0.0.8/sms", outbound_allow="10.0.0.0/8")

    # A gateway name that resolves to a private address is caught when sending.
    port = receiver.url.rsplit(":", 1)[1]
    settings = Settings(sms_gateway_url=f"http://{_local_name()}:{port}/sms", http_timeout=2.0)
    with pytest.raises(PermanentError, match="outbound address policy"):
        _send(run, SmsChannel(settings), make_message(channel="sms", address="+8613800000000"))
    assert receiver.requests == []


@pytest.mark.parametrize("named", [False, True], ids=["address", "name"])
def test_a_url_permitted_under_one_allow_list_is_still_refused_under_another(
    run, receiver, secret, make_message, named
):
    port = receiver.url.rsplit(":", 1)[1]
    host = _local_name() if named else "127.0.0.1"
    message = make_message(address=f"http://{host}:{port}/hook")
    allowed = WebhookChannel(
        Settings(webhook_secret=secret, http_timeout=2.0, outbound_allow="127.0.0.0/8, ::1")
    )
    refused = WebhookChannel(Settings(webhook_secret=secret, http_timeout=2.0))

    # Judged again and again, in both orders: what one setting decided never leaks
    # into the other's decision.
    for _ in range(2):
        assert _send(run, allowed, message).delivered is True
        with pytest.raises(PermanentError, match=r"TIDINGS_OUTBOUND_ALLOW|outbound address policy"):
            _send(run, refused, message)
    assert len(receiver.requests) == 2


def test_the_same_policy_judges_each_url_on_its_own():
    policy = OutboundPolicy("10.1.0.0/16")
    urls = {
        "http://10.1.2.3/hook": None,
        "http://10.1.2.3/hook/u-2?k=1": None,
        "http://10.2.0.1/hook": "private",
        "http://10.2.0.1:8080/hook/u-2": "private",
        "HTTP://10.2.0.1#x": "private",
        "http://user:pw@10.2.0.1/hook": "private",
        "http://hooks.example.com@10.2.0.1/hook": "private",
        "http://10.1.2.3@10.2.0.1/hook": "private",
        "http://10.2.0.1@hooks.example.com/hook": None,
        "https://hooks.example.com/a": None,
        "https://hooks.example.com/b": None,
        "http://169.254.169.254/latest": "link-local",
        "http://0xa9.254.169.254/latest": "link-local",
        "http://localhost:8080/": "this machine",
        "http://api.localhost/": "this machine",
        "http:///no-host": "no host",
    }
    for _ in range(2):  # the second round answers from what the first decided
        for url, refusal in urls.items():
            reason = policy.refusal(url)
            assert (reason is None) if refusal is None else (refusal in (reason or ""))
