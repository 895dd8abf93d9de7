"""One HTTP POST for the Slack, Teams and webhook channels, with failures sorted into retry or give up;
and ``SecretUrlChannel``, the one channel Slack and Teams share (only their rendering differs).

aiohttp (already the controller's HTTP library) with one session for all targets, created on first
use inside the running loop. What the queue needs to know about an answer:

- 2xx: delivered.
- 429, 408 and 5xx, connection errors, timeouts: worth another attempt; ``Retry-After`` (seconds or
  an HTTP date) is passed on so the queue waits at least that long.
- anything else (400 invalid payload, 403, 404 a deleted webhook, 3xx): retrying cannot help.

Redirects are not followed: an incoming-webhook URL that redirects is misconfigured, and following
it would send the body (with its one-click links) somewhere nobody configured. Errors carry a kind
only ("HTTP 503", "ClientConnectorError"): aiohttp's own messages quote the URL, which for Slack and
Teams is the credential, so they are dropped here (``from None``) before anything can log them.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

import controller

from .channel import DeliveryError, Prepared, redacted_destination
from .config import SecretRef
from .links import GateLinks
from .secrets import SecretError, SecretReader
from .transition import Transition

__all__ = ["HttpPoster", "SecretUrlChannel", "parse_retry_after"]

_RETRYABLE = frozenset({408, 429})
# Answers are read (so the connection can be reused) but never kept: a bounded drain.
_DRAIN_BYTES = 64 * 1024


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now``: delay-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such.
        return None
    return max(0.0, when.timestamp() - now)


class HttpPoster:
    """POSTs bodies; ``clock`` (epoch seconds) turns an HTTP-date ``Retry-After`` into a delay."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"lambda-rollouts/{controller.__version__}"},
                # Honour HTTPS_PROXY / NO_PROXY: controllers often reach chat services through an egress proxy.
                trust_env=True,
            )
        return self._session

    async def post(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> None:
        """One POST; returns on 2xx, raises ``DeliveryError`` otherwise (the caller bounds it in time)."""
        try:
            async with self._client().post(url, data=body, headers=dict(headers), allow_redirects=False) as response:
                await response.content.read(_DRAIN_BYTES)
                if 200 <= response.status < 300:
                    return
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._clock())
        except TimeoutError:
            raise DeliveryError("timeout", retryable=True) from None
        except aiohttp.ClientError as error:
            raise DeliveryError(type(error).__name__, retryable=True) from None
        retryable = status in _RETRYABLE or status >= 500
        raise DeliveryError(f"HTTP {status}", retryable=retryable, retry_after=retry_after if retryable else None)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SecretUrlChannel:
    """Slack and Teams: JSON ``render(transition, links)`` posted to the URL that ``url`` names, read
    at each send (a rotated Secret is picked up), because for both the URL is the credential."""

    def __init__(
        self,
        *,
        name: str,
        url: SecretRef,
        secrets: SecretReader,
        http: HttpPoster,
        render: Callable[[Transition, GateLinks | None], Mapping[str, Any]],
    ) -> None:
        self._name = name
        self._url = url
        self._secrets = secrets
        self._http = http
        self._render = render

    @property
    def name(self) -> str:
        return self._name

    def describe(self) -> str:
        try:
            return redacted_destination(self._secrets.read(self._url))
        except SecretError:
            return "<URL unreadable>"

    def prepare(self, transition: Transition, links: GateLinks | None) -> Prepared:
        body = json.dumps(self._render(transition, links), ensure_ascii=False).encode("utf-8")
        return Prepared(transition=transition, body=body)

    async def deliver(self, prepared: Prepared) -> None:
        try:
            address = self._secrets.read(self._url)
        except SecretError:
            # A file in the middle of a Secret rotation may be back in a moment: worth another attempt.
            raise DeliveryError("URL unreadable", retryable=True) from None
        await self._http.post(address, body=prepared.body, headers={"Content-Type": prepared.content_type})
