"""From a checked config to running parts: the channels, the link signer, the ``Notifier``.

The daemon does, in this order: ``load_notifications`` (refuse to start on any error),
``check_secrets`` (likewise: every variable and file must be readable now, not at the first
rollback), then ``build_notifier`` and, when links are configured, mounts
``gate_routes(notifier.signer, submit)`` on its HTTP server: the signer that issues the links in
messages is the one that verifies them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from controller.aws.sns import SnsAdapter

from .channel import Channel
from .config import Links, NotificationConfig, SlackTarget, SnsTarget, Target, TeamsTarget, WebhookTarget
from .delivery import Notifier, NotifyObserver, OnDelivered, OnFinished
from .http import HttpPoster, SecretUrlChannel
from .links import GateSigner
from .secrets import SecretReader
from .slack import render_slack
from .sns import SnsChannel
from .teams import render_teams
from .webhook import WebhookChannel

__all__ = ["build_notifier", "gate_signer"]


def gate_signer(links: Links, secrets: SecretReader) -> GateSigner:
    """The signer for ``links`` (raises ``SecretError`` if the key cannot be read: run ``check_secrets`` first)."""
    key = secrets.read(links.signing_key).encode("utf-8")
    return GateSigner(key=key, base_url=links.base_url, ttl=links.ttl)


def _channel(
    target: Target, *, secrets: SecretReader, http: HttpPoster, sns: SnsAdapter | None, clock: Callable[[], float]
) -> Channel:
    if isinstance(target, SlackTarget):
        return SecretUrlChannel(name=target.name, url=target.url, secrets=secrets, http=http, render=render_slack)
    if isinstance(target, TeamsTarget):
        return SecretUrlChannel(name=target.name, url=target.url, secrets=secrets, http=http, render=render_teams)
    if isinstance(target, WebhookTarget):
        url = target.url if target.url is not None else target.url_from
        if url is None:
            raise ValueError(f"webhook target {target.name} has no URL")
        return WebhookChannel(
            name=target.name,
            url=url,
            secret=target.secret,
            headers=target.headers,
            secrets=secrets,
            http=http,
            clock=clock,
        )
    if isinstance(target, SnsTarget):
        if sns is None:
            raise ValueError(f"SNS target {target.name} needs the controller's AWS clients")
        return SnsChannel(name=target.name, topic_arn=target.topic_arn, sns=sns)
    raise TypeError(f"unknown target {target!r}")


def build_notifier(
    config: NotificationConfig,
    *,
    secrets: SecretReader,
    sns: SnsAdapter | None = None,
    observer: NotifyObserver | None = None,
    on_delivered: OnDelivered | None = None,
    on_finished: OnFinished | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> Notifier:
    """A ``Notifier`` for ``config``, issuing one-click links when ``config.links`` is set.

    Raises ``SecretError`` when the signing key cannot be read (``check_secrets`` reports it first).
    """
    http = HttpPoster(clock=clock)
    signer = gate_signer(config.links, secrets) if config.links is not None else None
    channels = [_channel(target, secrets=secrets, http=http, sns=sns, clock=clock) for target in config.targets]
    return Notifier(
        config=config,
        channels=channels,
        signer=signer,
        observer=observer,
        on_delivered=on_delivered,
        on_finished=on_finished,
        http=http,
        clock=clock,
        sleep=sleep,
        rand=rand,
    )
