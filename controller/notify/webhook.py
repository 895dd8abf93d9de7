"""Webhooks: a CloudEvents 1.0 event in structured mode, optionally signed with a shared secret.

The body is one JSON object (``Content-Type: application/cloudevents+json``) with the context
attributes ``specversion`` 1.0, ``id`` (the transition id: the same on every retry and after a
restart, so a receiver deduplicates on it), ``source`` ``/lambda-rollouts/<namespace>/<name>``,
``type`` ``dev.rollouts.lambda.<trigger in lower case>``, ``time`` (RFC 3339), ``subject``
(``function:alias``) and ``datacontenttype`` ``application/json``; ``data`` is the transition
(``Transition.to_dict``) plus the one-click ``links`` when there are any. SNS publishes the same event.

With ``secretFrom``, every attempt carries::

    X-Lambda-Rollouts-Timestamp: <unix seconds of this attempt>
    X-Lambda-Rollouts-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

The timestamp is inside the signature, so a receiver that refuses old timestamps (five minutes is
usual) cannot be fed a recorded request again later; each retry is signed afresh, with the same body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from .channel import DeliveryError, Prepared, redacted_destination
from .config import Header, SecretRef
from .http import HttpPoster
from .links import GateLinks
from .secrets import SecretError, SecretReader
from .transition import Transition, rfc3339

__all__ = [
    "CONTENT_TYPE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "render_cloudevent",
    "signature",
]

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
SIGNATURE_HEADER = "X-Lambda-Rollouts-Signature"
TIMESTAMP_HEADER = "X-Lambda-Rollouts-Timestamp"
TYPE_PREFIX = "dev.rollouts.lambda."


def render_cloudevent(transition: Transition, links: GateLinks | None = None) -> dict[str, Any]:
    """The CloudEvent (structured mode) for ``transition``."""
    data = transition.to_dict()
    if links is not None:
        data["links"] = {"promote": links.promote, "abort": links.abort, "expiresAt": rfc3339(links.expires_at)}
    return {
        "specversion": "1.0",
        "id": transition.id,
        "source": f"/lambda-rollouts/{transition.namespace}/{transition.name}",
        "type": TYPE_PREFIX + transition.trigger.value.lower(),
        "time": rfc3339(transition.at),
        "subject": transition.target,
        "datacontenttype": "application/json",
        "data": data,
    }


def signature(secret: str, *, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``b"<timestamp>." + body``."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class WebhookChannel:
    """POSTs CloudEvents to a URL (inline or from a secret), with static headers and an optional signature."""

    def __init__(
        self,
        *,
        name: str,
        url: str | SecretRef,
        secret: SecretRef | None,
        headers: tuple[Header, ...],
        secrets: SecretReader,
        http: HttpPoster,
        clock: Callable[[], float],
    ) -> None:
        self._name = name
        self._url = url
        self._secret = secret
        self._headers = headers
        self._secrets = secrets
        self._http = http
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    def _address(self) -> str:
        return self._url if isinstance(self._url, str) else self._secrets.read(self._url)

    def _header(self, header: Header) -> str:
        return header.value if header.value_from is None else self._secrets.read(header.value_from)

    def describe(self) -> str:
        try:
            return redacted_destination(self._address())
        except SecretError:
            return "<URL unreadable>"

    def prepare(self, transition: Transition, links: GateLinks | None) -> Prepared:
        body = json.dumps(render_cloudevent(transition, links), ensure_ascii=False, separators=(",", ":"))
        return Prepared(transition=transition, body=body.encode("utf-8"), content_type=CONTENT_TYPE)

    async def deliver(self, prepared: Prepared) -> None:
        try:
            address = self._address()
            headers = {header.name: self._header(header) for header in self._headers}
            shared = self._secrets.read(self._secret) if self._secret is not None else None
        except SecretError:
            raise DeliveryError("secret unreadable", retryable=True) from None
        headers["Content-Type"] = prepared.content_type
        if shared is not None:
            timestamp = int(self._clock())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = signature(shared, timestamp=timestamp, body=prepared.body)
        await self._http.post(address, body=prepared.body, headers=headers)
