"""What every HTTP-speaking channel shares: one client session, one status-to-error mapping."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from channels.base import Channel
from channels.errors import PermanentError, TransientError
from channels.outbound import REFUSED, outbound_policy

USER_AGENT = "Tidings"
# How much of an error response is read, and how much of it ends up in the error.
READ_LIMIT = 4096
EXCERPT_CHARS = 200
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def excerpt(body: bytes | str) -> str:
    """A short, single-line excerpt of a response body, for an error message."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def raise_for_status(what: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Map an HTTP response to success (return) or a delivery error (raise).

    2xx is success. 408, 425, 429 and 5xx are worth retrying, honouring `Retry-After`
    on 429 and 503. Everything else, including redirects (which are not followed, so
    a payload never turns into a GET), will not get better by retrying.
    """
    if 200 <= status < 300:
        return
    detail = f"{what}: HTTP {status}"
    if text := excerpt(body):
        detail = f"{detail}: {text}"
    if status in RETRYABLE_STATUSES or status >= 500:
        delay = retry_after(headers.get("Retry-After")) if status in (429, 503) else None
        raise TransientError(detail, retry_after=delay)
    raise PermanentError(detail)


def dump(payload: Mapping[str, Any], what: str) -> str:
    """Serialise a payload as compact JSON; content that cannot be serialised is permanent.

    orjson writes it (several times faster: it runs once per delivery); what orjson refuses
    and the standard library takes (an integer beyond 64 bits) is written by the latter.
    """
    try:
        return orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        pass
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise PermanentError(f"{what}: payload is not JSON-serialisable: {exc}") from exc


class HttpChannel(Channel):
    """A channel that POSTs JSON: one `aiohttp.ClientSession` per opened channel.

    The session is opened in `open` (or on first send) and bound to that event loop.
    """

    _session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._client()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Every connection, to a resolved name or an address literal, passes the policy.
            factory = outbound_policy(self.settings).socket_factory()
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.http_timeout),
                headers={"User-Agent": USER_AGENT},
                connector=aiohttp.TCPConnector(socket_factory=factory),
            )
        return self._session

    async def post(self, url: str, payload: str, headers: Mapping[str, str]) -> None:
        """POST a JSON body, raising a delivery error for anything but a 2xx."""
        what = self.name
        headers = {**headers, "Content-Type": "application/json"}
        if reason := outbound_policy(self.settings).refusal(url):
            raise PermanentError(f"{what}: {reason}")
        try:
            async with self._client().post(
                url, data=payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                body = await response.content.read(READ_LIMIT)
                status, response_headers = response.status, response.headers
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            # The URL itself may carry a secret, so it stays out of the message.
            raise PermanentError(f"{what}: invalid URL") from exc
        except aiohttp.ClientConnectorError as exc:
            if REFUSED in str(exc.os_error):
                raise PermanentError(f"{what}: {exc.os_error}") from exc
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or "timed out"
            raise TransientError(f"{what}: {type(exc).__name__}: {reason}") from exc
        raise_for_status(what, status, response_headers, body)
