"""Where outgoing HTTP requests (webhooks, SMS and push gateways) may go.

A recipient's `webhook_url` is data from outside; left unchecked it turns the worker into a
proxy to the private network and to cloud metadata services (`169.254.169.254`). So only
public (globally routable) addresses are reached by default: private, loopback,
link-local, shared (CGNAT), multicast and reserved ranges are refused, unless the operator
lists them in `TIDINGS_OUTBOUND_ALLOW` (comma-separated addresses or CIDR networks, e.g.
`10.1.0.0/16,192.168.5.7`).

The rule is applied twice: when a URL is written (an address literal, `localhost`), and
when a connection is made, to the very address the name resolved to, so a name that
resolves to a public address when written and to a private one when used (DNS rebinding)
is still refused.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (family, type, proto, canonname, sockaddr), as `getaddrinfo` gives them.
AddrInfo = tuple[int, int, int, str, tuple[object, ...]]
# Marks the connection error a refused address causes, for the channels' error mapping.
REFUSED = "refused by the outbound address policy"
LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
# Origins whose judgement a policy keeps: every recipient may have a webhook URL of their
# own, but they point at a few hosts.
JUDGED_URLS = 4096
# A plain http(s) URL's scheme, host and port: all a judgement depends on. A URL with
# anything unusual there (user info, spaces, control characters) does not match and is
# judged whole.
ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:_~%]*(?=[/?#]|\Z)", re.IGNORECASE)


class SupportsAllow(Protocol):
    outbound_allow: str


class BlockedAddress(OSError):
    """A connection to an address the policy refuses (raised before connecting)."""


def parse_allow(value: str) -> tuple[Network, ...]:
    """The networks of an allow-list such as `10.0.0.0/8, 127.0.0.1`; ValueError if malformed."""
    networks = []
    for item in value.replace(";", ",").split(","):
        if item.strip():
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
    return tuple(networks)


class OutboundPolicy:
    """The public internet, plus the networks an operator allowed."""

    def __init__(self, allow: str = "") -> None:
        self.allow = parse_allow(allow)
        # What `refusal` said of each origin lately: a broadcast sends to the same few
        # hosts over and over. Kept per policy, so a URL judged under one allow-list is
        # judged anew under another.
        self._judged: dict[str, str | None] = {}

    def permits(self, address: Address) -> bool:
        """Whether a connection to `address` may be made."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allow):
            return True
        return address.is_global and not address.is_multicast

    def refusal(self, url: str) -> str | None:
        """Why `url` is refused when written (an address literal or a local name), or None.

        A host name is judged again, by its resolved addresses, at every connection.
        """
        origin = ORIGIN.match(url)
        key = origin.group() if origin else url
        try:
            return self._judged[key]
        except KeyError:
            pass
        if len(self._judged) >= JUDGED_URLS:
            self._judged.clear()
        reason = self._judged[key] = self._refusal(key)
        return reason

    def _refusal(self, url: str) -> str | None:
        try:
            host = (urlsplit(url).hostname or "").rstrip(".").lower()
        except ValueError:
            return "not a valid URL"
        if not host:
            return "the URL has no host"
        try:
            address = _literal(host)
        except ValueError:
            if host in LOCAL_NAMES or host.endswith(".localhost"):
                local = ipaddress.ip_address("127.0.0.1")
                return None if self.permits(local) else f"{host} is this machine; {_advice()}"
            return None
        if self.permits(address):
            return None
        return f"{address} is a {_kind(address)} address; {_advice()}"

    def socket_factory(
        self,
    ) -> Callable[[tuple[int, int, int, str, tuple[object, ...]]], socket.socket]:
        """An aiohttp `socket_factory` that refuses to connect to a forbidden address."""

        def factory(addr_info: tuple[int, int, int, str, tuple[object, ...]]) -> socket.socket:
            family, type_, proto, _, sockaddr = addr_info
            address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            if not self.permits(address):
                raise BlockedAddress(f"{address} ({_kind(address)}) is {REFUSED}")
            return socket.socket(family=family, type=type_, proto=proto)

        return factory


@functools.lru_cache(maxsize=16)
def _policy(allow: str) -> OutboundPolicy:
    return OutboundPolicy(allow)


def outbound_policy(settings: SupportsAllow) -> OutboundPolicy:
    """The policy of these settings (`outbound_allow`), parsed once."""
    return _policy(settings.outbound_allow)


def _literal(host: str) -> Address:
    """The address a host literal stands for, legacy IPv4 forms (`2130706433`, `0x7f.1`,
    which resolvers accept) included; ValueError for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise ValueError(host) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _kind(address: Address) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local (cloud metadata)"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    return "non-public"


def _advice() -> str:
    return "list it in TIDINGS_OUTBOUND_ALLOW to reach it"
