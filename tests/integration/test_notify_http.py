"""Notifications over real sockets: a local receiver gets the Slack, Teams and CloudEvents bodies of a
promoted and an alarm-rolled-back rollout exactly once each, signed as documented; 500s and 429s are
retried (Retry-After honoured); dead receivers (connection refused, never answering) never hold up
``offer`` nor the other targets; and no secret reaches a log line at any level, aiohttp's included."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.notify import Transition, Trigger, build_notifier, parse_notifications
from controller.notify.config import NotificationConfig
from controller.notify.delivery import Notifier
from controller.notify.secrets import SecretReader, check_secrets
from tests.integration.receiver import Answer, Receiver

SLACK_SECRET = "XoXbSlackSecretPart7f3a"
TEAMS_SIG = "TeamsSigSecretValue91c2"
HOOK_SECRET = "webhook-shared-secret-5d1e"
SIGNING_KEY = "gate-signing-key-0123456789abcdef-0123456789"
SECRETS = (SLACK_SECRET, TEAMS_SIG, HOOK_SECRET, SIGNING_KEY)

AT = time.time()
PROMOTED = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.PROMOTED,
    attempt="43@1767225000",
    at=AT,
    version="43",
    stable_version="43",
    weight=100,
    step=4,
    steps=4,
    phase=Phase.HEALTHY,
    reason=Reason.PROMOTED,
    message="version 43 promoted: 100% of prod",
)
ROLLED_BACK = Transition(
    namespace="payments",
    name="search-api",
    function_name="search-api",
    alias="live",
    trigger=Trigger.ROLLED_BACK,
    attempt="8@1767225100",
    at=AT,
    version="8",
    stable_version="7",
    weight=10,
    step=1,
    steps=2,
    phase=Phase.ROLLED_BACK,
    reason=Reason.ALARM_FIRED,
    message="alarm search-api-errors in ALARM: rolled back to 7",
)
WAITING = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.WAITING_FOR_PROMOTION,
    attempt="44@1767226000",
    at=AT,
    version="44",
    stable_version="43",
    weight=25,
    step=2,
    steps=4,
    phase=Phase.PAUSED,
    reason=Reason.WAITING_FOR_PROMOTE,
    discriminator="2",
)


@dataclass
class Sleeps:
    """An injected sleep: records each backoff and returns at once (the sockets stay real)."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


@dataclass
class Outcomes:
    delivered: list[tuple[str, str]] = field(default_factory=list)
    finished: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def notification_target(self, *, target: str) -> None:
        return None

    def notification(self, *, target: str, outcome: str) -> None:
        self.finished.append((target, outcome))

    def notification_dropped(self, *, target: str) -> None:
        self.dropped.append(target)


def load(text: str, environ: dict[str, str]) -> NotificationConfig:
    config, errors = parse_notifications(text, file="notifications.yaml")
    assert [str(error) for error in errors] == []
    assert config is not None
    assert [str(error) for error in check_secrets(config, SecretReader(environ=environ))] == []
    return config


def notifier(
    config: NotificationConfig, environ: dict[str, str], outcomes: Outcomes, sleep: Callable[[float], Any] | None = None
) -> Notifier:
    return build_notifier(
        config,
        secrets=SecretReader(environ=environ),
        observer=outcomes,
        on_delivered=lambda id, target: outcomes.delivered.append((id, target)),
        sleep=sleep or Sleeps(),
    )


def three_targets(receiver: Receiver, tmp_path: Path, *, links: str = "") -> tuple[NotificationConfig, dict[str, str]]:
    teams_file = tmp_path / "teams-url"
    teams_file.write_text(f"{receiver.url}/workflows/7/triggers/manual?api-version=1&sig={TEAMS_SIG}\n")
    environ = {
        "SLACK_URL": f"{receiver.url}/services/T000/B000/{SLACK_SECRET}",
        "HOOK_URL": f"{receiver.url}/events",
        "HOOK_SECRET": HOOK_SECRET,
        "GATE_KEY": SIGNING_KEY,
    }
    text = f"""\
targets:
  - name: team
    slack: {{urlFrom: {{env: SLACK_URL}}}}
  - name: msteams
    teams: {{urlFrom: {{file: {teams_file}}}}}
  - name: ops
    webhook: {{urlFrom: {{env: HOOK_URL}}, secretFrom: {{env: HOOK_SECRET}}, headers: {{X-Team: payments}}}}
subscriptions:
  - {{target: team, on: [Promoted, RolledBack, WaitingForPromotion]}}
  - {{target: msteams, on: [Promoted, RolledBack, WaitingForPromotion]}}
  - {{target: ops, on: [Promoted, RolledBack, WaitingForPromotion]}}
delivery: {{maxAttempts: 4, attemptTimeout: 2s}}
{links}"""
    return load(text, environ), environ


SLACK_PATH = f"/services/T000/B000/{SLACK_SECRET}"
TEAMS_PATH = "/workflows/7/triggers/manual"


def verify_signature(secret: str, headers: dict[str, str], body: bytes, *, now: float) -> bool:
    """What a receiver does (docs/notifications.md), written independently of the controller's code."""
    timestamp = headers["X-Lambda-Rollouts-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    fresh = abs(now - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(headers["X-Lambda-Rollouts-Signature"], expected)


async def test_slack_teams_and_cloudevents_bodies_arrive_once_each(tmp_path: Path) -> None:
    outcomes = Outcomes()
    async with Receiver() as receiver:
        config, environ = three_targets(receiver, tmp_path)
        async with notifier(config, environ, outcomes) as sender:
            for transition in (PROMOTED, ROLLED_BACK):
                assert sender.offer(transition) == ("team", "msteams", "ops")
            assert sender.offer(PROMOTED) == ()  # offered twice, sent once
            await asyncio.wait_for(sender.idle(), 10)

    slack, teams, events = receiver.at(SLACK_PATH), receiver.at(TEAMS_PATH), receiver.at("/events")
    assert (len(slack), len(teams), len(events)) == (2, 2, 2)
    assert len(receiver.received) == 6
    assert sorted(outcomes.delivered) == sorted(
        (t.id, name) for t in (PROMOTED, ROLLED_BACK) for name in ("team", "msteams", "ops")
    )

    promoted, rolled_back = (request.json() for request in slack)
    assert promoted["text"] == "✅ Promoted: payments/brand-api"
    assert rolled_back["blocks"][0]["text"]["text"] == "⛔ Rolled back: payments/search-api"
    fields = [field["text"] for field in rolled_back["blocks"][1]["fields"]]
    assert "*Function*\nsearch-api:live" in fields and "*Reason*\nAlarmFired" in fields
    assert "search-api-errors" in rolled_back["blocks"][2]["text"]["text"]
    assert slack[0].headers["Content-Type"].startswith("application/json")

    card = teams[1].json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"][0]["text"] == "⛔ Rolled back: payments/search-api"
    assert {"title": "Stable", "value": "7"} in card["content"]["body"][1]["facts"]

    for request, transition in zip(events, (PROMOTED, ROLLED_BACK), strict=True):
        assert request.headers["Content-Type"] == "application/cloudevents+json; charset=utf-8"
        assert request.headers["X-Team"] == "payments"
        assert verify_signature(HOOK_SECRET, request.headers, request.body, now=time.time())
        assert not verify_signature("another secret", request.headers, request.body, now=time.time())
        event = request.json()
        assert (event["specversion"], event["id"], event["source"]) == (
            "1.0",
            transition.id,
            f"/lambda-rollouts/payments/{transition.name}",
        )
        assert event["type"] == f"dev.rollouts.lambda.{transition.trigger.value.lower()}"
        assert event["data"]["reason"] == transition.reason and event["data"]["version"] == transition.version


async def test_500_and_429_are_retried_honouring_retry_after(tmp_path: Path) -> None:
    outcomes, sleeps = Outcomes(), Sleeps()
    async with Receiver() as receiver:
        receiver.script("/events", Answer(500), Answer(429, {"Retry-After": "7"}))
        receiver.script(SLACK_PATH, Answer(503, {"Retry-After": formatdate(time.time() + 30, usegmt=True)}))
        receiver.script(TEAMS_PATH, Answer(404))  # a deleted webhook: retrying cannot help
        config, environ = three_targets(receiver, tmp_path)
        async with notifier(config, environ, outcomes, sleeps) as sender:
            sender.offer(ROLLED_BACK)
            await asyncio.wait_for(sender.idle(), 10)
    assert len(receiver.at("/events")) == 3 and len(receiver.at(SLACK_PATH)) == 2 and len(receiver.at(TEAMS_PATH)) == 1
    # Every attempt of the webhook carries the same event, each signed afresh.
    bodies = {request.body for request in receiver.at("/events")}
    assert len(bodies) == 1
    assert all(verify_signature(HOOK_SECRET, r.headers, r.body, now=time.time()) for r in receiver.at("/events"))
    assert sorted(outcomes.finished) == [("msteams", "failed"), ("ops", "sent"), ("team", "sent")]
    assert 7.0 in sleeps.delays  # the 429's Retry-After: 7
    assert any(28.0 <= delay <= 30.0 for delay in sleeps.delays)  # the 503's Retry-After as an HTTP date
    assert len(sleeps.delays) == 3


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_dead_receivers_never_hold_up_offer_nor_the_other_targets(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = Outcomes()
    async with Receiver() as receiver:
        receiver.script("/hang", *(Answer(hang=True) for _ in range(40)))
        text = f"""\
targets:
  - {{name: refused, webhook: {{url: "http://127.0.0.1:{closed_port()}/in"}}}}
  - {{name: silent, webhook: {{url: "{receiver.url}/hang"}}}}
  - {{name: live, webhook: {{url: "{receiver.url}/live"}}}}
subscriptions:
  - {{target: refused, on: [RolledBack]}}
  - {{target: silent, on: [RolledBack]}}
  - {{target: live, on: [RolledBack]}}
delivery: {{maxAttempts: 2, attemptTimeout: 5s}}
"""
        transitions = [
            Transition(
                namespace="payments",
                name=f"api-{n}",
                function_name=f"api-{n}",
                alias="live",
                trigger=Trigger.ROLLED_BACK,
                attempt="2@1",
                at=AT,
            )
            for n in range(10)
        ]
        sender = notifier(load(text, {}), {}, outcomes)
        async with sender:
            # The first message is already on its way to all three before the other offers come.
            assert sender.offer(transitions[0]) == ("refused", "silent", "live")
            await asyncio.sleep(0.05)
            timings = []
            for transition in transitions[1:]:
                started = time.perf_counter()
                queued = sender.offer(transition)
                timings.append(time.perf_counter() - started)
                assert queued == ("refused", "silent", "live")
            deadline = time.monotonic() + 10
            while len(receiver.at("/live")) < 10 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            # The live target got everything, in order, while the silent one is still stuck.
            assert [r.json()["data"]["rollout"]["name"] for r in receiver.at("/live")] == [
                f"api-{n}" for n in range(10)
            ]
            assert any(p.target == "silent" for p in sender.pending())
            # The refused one gives up after its attempts (its backoff may take a while on a busy machine).
            while ("refused", "failed") not in outcomes.finished and time.monotonic() < deadline + 10:
                await asyncio.sleep(0.01)
        assert outcomes.finished.count(("refused", "failed")) >= 1
    with capsys.disabled():
        print(
            f"\noffer with a refused and a silent receiver: median {statistics.median(timings) * 1e6:.1f} µs, "
            f"max {max(timings) * 1e6:.1f} µs over {len(timings)} offers"
        )


def log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter()
    parts = []
    for record in records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        parts += [str(value) for key, value in record.__dict__.items() if key not in ("msg", "args", "exc_info")]
    return "\n".join(parts)


async def test_no_secret_reaches_any_log_line_at_any_level(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root: controller, aiohttp, asyncio alike
    for name in ("aiohttp", "aiohttp.client", "aiohttp.internal", "aiohttp.server", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    outcomes = Outcomes()
    async with Receiver() as receiver:
        receiver.script(SLACK_PATH, Answer(500), Answer(200))
        receiver.script(TEAMS_PATH, Answer(403))
        receiver.script("/events", Answer(429, {"Retry-After": "1"}))
        links = f"links: {{baseUrl: '{receiver.url}', signingKeyFrom: {{env: GATE_KEY}}, ttl: 10m}}\n"
        config, environ = three_targets(receiver, tmp_path, links=links)
        async with notifier(config, environ, outcomes) as sender:
            sender.offer(WAITING)
            sender.offer(ROLLED_BACK)
            await asyncio.wait_for(sender.idle(), 10)
        # And a target whose secret URL points at nothing: connection refused, still never logged.
        environ["SLACK_URL"] = f"http://127.0.0.1:{closed_port()}/services/T000/B000/{SLACK_SECRET}"
        async with notifier(config, environ, outcomes) as sender:
            sender.offer(PROMOTED)
            await asyncio.wait_for(sender.idle(), 10)
    tokens = {
        button["url"].rsplit("/", 1)[1]
        for request in receiver.at(SLACK_PATH)
        for block in request.json()["blocks"]
        if block["type"] == "actions"
        for button in block["elements"]
    }
    assert len(tokens) == 2  # the links were really sent (the same two on the retry)...
    text = log_text(caplog.records)
    for secret in (*SECRETS, *tokens):
        assert secret not in text  # ...and neither they nor any secret was logged
    # The lines that were logged name the target and a redacted host.
    sent = [r for r in caplog.records if r.name == "controller.notify.delivery" and "sent" in r.getMessage()]
    assert sent and all(getattr(r, "destination", "").endswith("/…") for r in sent)
    assert any(r.levelno == logging.DEBUG and r.name.startswith("controller.notify") for r in caplog.records)
    assert ("team", "failed") in outcomes.finished  # the refused one
