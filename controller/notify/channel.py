"""The one seam between the delivery queue and the targets: ``Channel``, ``Prepared``, ``DeliveryError``.

Every target (Slack, Teams, webhook, SNS) is a ``Channel``: ``prepare`` renders a transition once
(so every retry sends the very same body, and a receiver that deduplicates on the CloudEvent id sees
one event), ``deliver`` makes one attempt. A failed attempt raises ``DeliveryError`` saying whether
trying again can help and how long the receiver asked us to wait; its text is a kind ("HTTP 503",
"ClientConnectorError"), never a URL, a header or a body, because the queue logs it and the URLs of
Slack and Teams are credentials. ``describe`` is what logs may say about where a channel sends: the
scheme and host, the path cut off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from .links import GateLinks
from .transition import Transition

__all__ = ["Channel", "DeliveryError", "Prepared", "redacted_destination"]


@dataclass(frozen=True)
class Prepared:
    """A transition rendered for one channel: the body and, for SNS, the subject and attributes."""

    transition: Transition
    body: bytes
    content_type: str = "application/json"
    subject: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


class DeliveryError(Exception):
    """One failed attempt. ``kind`` is safe to log; ``retry_after`` is the receiver's wish in seconds."""

    def __init__(self, kind: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after


class Channel(Protocol):
    """One configured target."""

    @property
    def name(self) -> str:
        """The target's name in the config (what metrics and logs show)."""

    def describe(self) -> str:
        """Where it sends, safe to log: ``https://hooks.slack.com/…``, an SNS topic ARN."""

    def prepare(self, transition: Transition, links: GateLinks | None) -> Prepared:
        """Render ``transition`` (with the one-click ``links`` issued to this target, when there are any)."""

    async def deliver(self, prepared: Prepared) -> None:
        """Make one attempt; raise ``DeliveryError`` when it failed. The queue bounds it with a timeout."""


def redacted_destination(url: str) -> str:
    """``https://hooks.slack.com/services/T0/B0/XYZ`` -> ``https://hooks.slack.com/…``: no path, query or user."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}/…"
