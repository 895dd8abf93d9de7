"""Notifications end to end: the real ``run`` daemon (a subprocess, ``--notifications FILE``) against
the strict emulator, sending to receivers on real sockets (``tests/e2e/webhooks.py``).

What a user relies on, each checked from the outside (what the receiver got, the durable record on
the function, the emulator's call log, ``/metrics``, ``get``):

- a promoted and an alarm-rolled-back rollout reach Slack (Block Kit), Teams (Adaptive Card) and a
  CloudEvents webhook (signed) with the function, version, namespace and reason (the alarm's name),
  exactly once each, and a restarted daemon sends nothing again;
- SIGKILLed between the transition and the send (the receiver down, the message in the record's
  outbox), a new daemon sends it exactly once and the outbox empties; SIGKILLed after the receiver has
  a message and before the record says so (the one duplicate window), the repeat has the same id;
- 500s, 429 with ``Retry-After`` and dropped connections are retried;
- dead receivers (never answering, refusing) leave the rollout's step timing as it is without them;
- an SNS topic with an SQS queue subscribed gets the messages;
- a signed promote link from a WaitingForPromotion message works once through the daemon's HTTP
  server and is recorded with its approver; replayed, tampered and expired links are refused and
  change nothing in AWS;
- ``run --once`` sends nothing and loses nothing: the outbox waits in the record for the next daemon;
- at ``--log-level DEBUG`` no secret (webhook URLs, the HMAC secret, the signing key, a link's token)
  reaches stdout, stderr, ``/metrics`` or ``get``.

Ticks are 0.2 s, pauses a second or less, alarms evaluated 100 times faster than CloudWatch does.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.core.codec import decode_record
from controller.core.types import Record, Verb
from controller.emulator import Emulator, EmulatorSettings
from controller.notify.links import GateSigner
from tests.e2e.webhooks import Answer, Received, Receiver, Silent
from tests.integration.helpers import (
    CLI,
    EMULATOR_SETTINGS,
    alias_routing,
    alias_writes,
    canary,
    cli_env,
    daemon,
    free_port,
    function_tags,
    http_ok,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    set_alarm,
    stop_with_sigterm,
    write_calls,
    write_document,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "payments"
# The secrets of the config: each must be readable by the daemon and must never come out of it.
SLACK_PATH = "/services/T0E2E/B0E2E/slackPathSecret4d7e2a"
TEAMS_PATH = "/workflows/teams/triggers/manual/paths/invoke"
TEAMS_SIG = "teamsSigSecret9c81f0"
HOOK_PATH = "/hooks/rollouts-7f3b"
HOOK_TOKEN = "hookQuerySecret51aa0c"
HOOK_SECRET = "hmac-shared-secret-2b9d6e01"
SIGNING_KEY = "gate-signing-key-e2e-0123456789abcdef-0123456789"
SECRETS = (SLACK_PATH, TEAMS_SIG, HOOK_TOKEN, HOOK_SECRET, SIGNING_KEY)
INTERVAL = 0.2


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0, settings=EmulatorSettings(**EMULATOR_SETTINGS))
    yield emu
    emu.stop()


@pytest.fixture
def aws(emulator: Emulator) -> Emulator:
    emulator.reset()
    emulator.configure(**EMULATOR_SETTINGS)
    return emulator


# ---- the world a test runs in --------------------------------------------------------------------


@dataclass
class World:
    """A GitOps directory, a notifications config, the daemon's environment and its ports."""

    aws: Emulator
    tmp: Path
    source: Path
    config: Path
    env: dict[str, str]
    metrics_port: int

    def rollout(self, name: str, *, strategy: dict[str, Any], alarms: tuple[str, ...] = ()) -> None:
        """Seed function ``name`` (versions 1 and 2, alias ``live`` on 1) and write its rollout to version 2."""
        seed_alias(self.aws, name)
        document = rollout_document(
            name, function=name, version="2", strategy=strategy, alarms=alarms, namespace=NAMESPACE
        )
        write_document(self.source, document)

    @contextlib.contextmanager
    def daemon(self, name: str, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
        """``run --notifications`` on the directory for the block (SIGKILLed if still running at its end).

        A failure in the block names the daemon's exit and last words when it had stopped (a bad config).
        """
        args = ["run", "--source", str(self.source), "--interval", str(INTERVAL), "--lease", "off"]
        args += ["--log-format", "json", "--metrics-port", str(self.metrics_port), "--notifications", str(self.config)]
        log = self.tmp / f"{name}.err"
        with daemon([*args, *extra], env=self.env, log=log, out=self.tmp / f"{name}.out") as process:
            try:
                yield process
            except AssertionError:
                if process.poll() is None or process.returncode == -signal.SIGKILL:
                    raise
                raise AssertionError(f"{name} exited {process.returncode}: {log.read_text()[-2000:]}") from None

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.err").read_text() + (self.tmp / f"{name}.out").read_text()

    def ready(self) -> None:
        """Wait until the daemon answers ``/readyz`` (its first tick is done)."""
        until(lambda: http_ok(f"http://127.0.0.1:{self.metrics_port}/readyz"), what="/readyz")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())


def write_config(
    path: Path,
    *,
    targets: str,
    on: str = "[Started, WaitingForPromotion, Promoted, RolledBack]",
    links_port: int | None = None,
    delivery: str = "",
) -> None:
    """A notifications config with ``targets`` (YAML list items), each subscribed to ``on``."""
    names = [line.split("name:", 1)[1].split(",")[0].strip() for line in targets.splitlines() if "name:" in line]
    subscriptions = "".join(f"  - {{target: {name}, on: {on}}}\n" for name in names)
    text = f"targets:\n{targets}subscriptions:\n{subscriptions}"
    if links_port is not None:
        text += f"links: {{baseUrl: 'http://127.0.0.1:{links_port}', signingKeyFrom: {{env: GATE_KEY}}, ttl: 10m}}\n"
    if delivery:
        text += f"delivery: {delivery}\n"
    path.write_text(text)


SLACK = "  - {name: team-slack, slack: {urlFrom: {env: SLACK_URL}}}\n"
TEAMS = "  - {name: team-teams, teams: {urlFrom: {env: TEAMS_URL}}}\n"
WEBHOOK = "  - {name: ops, webhook: {urlFrom: {env: HOOK_URL}, secretFrom: {env: HOOK_SECRET}}}\n"


def secret_env(receiver_url: str) -> dict[str, str]:
    return {
        "SLACK_URL": f"{receiver_url}{SLACK_PATH}",
        "TEAMS_URL": f"{receiver_url}{TEAMS_PATH}?api-version=1&sig={TEAMS_SIG}",
        "HOOK_URL": f"{receiver_url}{HOOK_PATH}?token={HOOK_TOKEN}",
        "HOOK_SECRET": HOOK_SECRET,
        "GATE_KEY": SIGNING_KEY,
    }


@pytest.fixture
def world(aws: Emulator, tmp_path: Path) -> World:
    source = tmp_path / "rollouts"
    source.mkdir()
    return World(aws, tmp_path, source, tmp_path / "notifications.yaml", cli_env(aws), free_port())


# ---- reading what happened -----------------------------------------------------------------------


def until(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)  # polling cadence


def record_of(aws: Emulator, function: str) -> Record:
    record = decode_record("live", function_tags(aws, function))
    assert record is not None, f"no durable record on {function}"
    return record


def phase_of(aws: Emulator, function: str) -> str | None:
    """The phase in the durable record; None before the controller wrote one."""
    record = decode_record("live", function_tags(aws, function))
    return record.phase.value if record is not None else None


def outbox(aws: Emulator, function: str) -> list[str]:
    """The triggers waiting in the record's outbox, oldest first."""
    return [entry.trigger.value for entry in record_of(aws, function).outbox]


def headline_of(request: Received) -> str:
    """The first line a person sees, whatever the target: Slack's header, Teams' title, the event type."""
    body = request.json()
    if "blocks" in body:
        return str(body["blocks"][0]["text"]["text"])
    if "attachments" in body:
        return str(body["attachments"][0]["content"]["body"][0]["text"])
    return str(body["type"])


def slack_fields(body: dict[str, Any]) -> dict[str, str]:
    (section,) = [block for block in body["blocks"] if block["type"] == "section" and "fields" in block]
    return dict(field["text"].split("\n", 1) for field in section["fields"])


def teams_card(body: dict[str, Any]) -> dict[str, Any]:
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return dict(attachment["content"])


def teams_facts(card: dict[str, Any]) -> dict[str, str]:
    (facts,) = [item for item in card["body"] if item["type"] == "FactSet"]
    return {fact["title"]: fact["value"] for fact in facts["facts"]}


def verified(request: Received) -> bool:
    """The webhook's signature, checked as docs/notifications.md tells a receiver to."""
    timestamp = request.headers["X-Lambda-Rollouts-Timestamp"]
    mac = hmac.new(HOOK_SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.headers["X-Lambda-Rollouts-Signature"], f"sha256={mac}")


def gate(method: str, url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


def cli(world: World, *args: str) -> str:
    """A terminal verb's stdout and stderr (it must succeed)."""
    done = subprocess.run([*CLI, *args], env=world.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def assert_no_secret(where: str, text: str, *extra: str) -> None:
    leaked = [secret for secret in (*SECRETS, *extra) if secret in text]
    assert not leaked, f"{where} shows {leaked}"


# ---- the tests -----------------------------------------------------------------------------------


def test_slack_teams_and_cloudevents_get_each_transition_exactly_once_and_no_secret_shows(world: World) -> None:
    with Receiver() as receiver:
        world.env.update(secret_env(receiver.url))
        write_config(world.config, targets=SLACK + TEAMS + WEBHOOK, links_port=world.metrics_port)
        put_hand_alarm(world.aws.client("cloudwatch"), "search-api-errors")
        world.rollout("brand-api", strategy=canary(50, 0.4))
        world.rollout("search-api", strategy=canary(20, None), alarms=("search-api-errors",))

        with world.daemon("first", "--log-level", "DEBUG") as first:
            until(lambda: len(receiver.at(HOOK_PATH)) >= 4, what="Started x2, Promoted, WaitingForPromotion")
            set_alarm(world.aws.client("cloudwatch"), "search-api-errors", "ALARM")
            until(lambda: len(receiver.received) >= 15, what="5 messages to each of 3 targets")
            until(lambda: not outbox(world.aws, "brand-api") and not outbox(world.aws, "search-api"), what="outboxes")
            metrics = world.metrics()
            time.sleep(5 * INTERVAL)  # five more ticks: nothing may be sent again
            stop_with_sigterm(first)
        # A restarted controller finds empty outboxes: nothing is sent again.
        with world.daemon("second") as second:
            world.ready()
            time.sleep(5 * INTERVAL)
            stop_with_sigterm(second)
        got = list(receiver.received)

    assert alias_routing(world.aws, "brand-api", "live") == ("2", {})
    assert alias_routing(world.aws, "search-api", "live") == ("1", {})
    by_target = {path: [r for r in got if r.path.startswith(path)] for path in (SLACK_PATH, TEAMS_PATH, HOOK_PATH)}
    assert {path: len(requests) for path, requests in by_target.items()} == dict.fromkeys(by_target, 5)

    # CloudEvents: one event per transition, each id once, signed, typed, with the facts in data.
    events = [request.json() for request in by_target[HOOK_PATH]]
    assert len({event["id"] for event in events}) == 5
    assert all(verified(request) for request in by_target[HOOK_PATH])
    assert all(r.headers["Content-Type"].startswith("application/cloudevents+json") for r in by_target[HOOK_PATH])
    kinds = sorted((event["source"], event["type"]) for event in events)
    assert kinds == [
        ("/lambda-rollouts/payments/brand-api", "dev.rollouts.lambda.promoted"),
        ("/lambda-rollouts/payments/brand-api", "dev.rollouts.lambda.started"),
        ("/lambda-rollouts/payments/search-api", "dev.rollouts.lambda.rolledback"),
        ("/lambda-rollouts/payments/search-api", "dev.rollouts.lambda.started"),
        ("/lambda-rollouts/payments/search-api", "dev.rollouts.lambda.waitingforpromotion"),
    ]
    (promoted,) = [e for e in events if e["type"] == "dev.rollouts.lambda.promoted"]
    assert promoted["specversion"] == "1.0" and promoted["subject"] == "brand-api:live"
    data = promoted["data"]
    assert (data["rollout"], data["functionName"], data["version"], data["phase"]) == (
        {"namespace": "payments", "name": "brand-api"},
        "brand-api",
        "2",
        "Healthy",
    )
    (rolled_back,) = [e for e in events if e["type"] == "dev.rollouts.lambda.rolledback"]
    data = rolled_back["data"]
    assert (data["version"], data["stableVersion"], data["reason"], data["weight"]) == ("2", "1", "AlarmFired", 20)
    assert "search-api-errors" in data["message"]

    # Slack: Block Kit, the facts as fields, the alarm named in the message.
    slack = {headline_of(request): request.json() for request in by_target[SLACK_PATH]}
    assert set(slack) == {
        "🚀 Rollout started: payments/brand-api",
        "✅ Promoted: payments/brand-api",
        "🚀 Rollout started: payments/search-api",
        "⏸️ Waiting for promotion: payments/search-api",
        "⛔ Rolled back: payments/search-api",
    }
    fields = slack_fields(slack["✅ Promoted: payments/brand-api"])
    assert (fields["*Rollout*"], fields["*Function*"], fields["*Version*"]) == (
        "payments/brand-api",
        "brand-api:live",
        "2",
    )
    rolled = slack["⛔ Rolled back: payments/search-api"]
    assert slack_fields(rolled)["*Reason*"] == "AlarmFired"
    assert any("search-api-errors" in block.get("text", {}).get("text", "") for block in rolled["blocks"])
    waiting = slack["⏸️ Waiting for promotion: payments/search-api"]
    (actions,) = [block for block in waiting["blocks"] if block["type"] == "actions"]
    tokens = [button["url"].rsplit("/", 1)[1] for button in actions["elements"]]
    assert [button["text"]["text"] for button in actions["elements"]] == ["Promote", "Abort"]

    # Teams: an Adaptive Card with a FactSet, coloured by outcome.
    cards = {headline_of(request): teams_card(request.json()) for request in by_target[TEAMS_PATH]}
    assert set(cards) == set(slack)
    card = cards["⛔ Rolled back: payments/search-api"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["color"] == "Attention"
    facts = teams_facts(card)
    assert (facts["Function"], facts["Version"], facts["Stable"], facts["Reason"]) == (
        "search-api:live",
        "2",
        "1",
        "AlarmFired",
    )
    assert any("search-api-errors" in item.get("text", "") for item in card["body"])
    assert cards["✅ Promoted: payments/brand-api"]["body"][0]["color"] == "Good"

    # No secret, nor a link's token, in anything the controller shows, at DEBUG.
    assert '"level": "debug"' in world.output("first")  # DEBUG really was on
    for name in ("first", "second"):
        assert_no_secret(f"the {name} daemon's output", world.output(name), *tokens)
    assert 'lambda_rollouts_notifications_total{outcome="sent",target="ops"} 5.0' in metrics
    assert_no_secret("/metrics", metrics, *tokens)
    for args in (["get"], ["get", "search-api", "-o", "json"], ["get", "brand-api", "-o", "yaml"]):
        assert_no_secret(f"lambda-rollouts {' '.join(args)}", cli(world, *args), *tokens)


def test_killed_between_the_transition_and_the_send_a_new_daemon_sends_it_exactly_once(world: World) -> None:
    receiver = Receiver(free_port())  # down: nothing listens on its port yet, connections are refused
    world.env.update(secret_env(receiver.url))
    # Patient enough that the first daemon is still trying when it dies.
    write_config(world.config, targets=SLACK + WEBHOOK, delivery="{maxAttempts: 20, maxAge: 1h}")
    world.rollout("brand-api", strategy=canary(50, 0.4))
    try:
        with world.daemon("first") as first:
            until(lambda: phase_of(world.aws, "brand-api") == "Healthy", what="promoted")
            waiting = [(entry.trigger.value, entry.id) for entry in record_of(world.aws, "brand-api").outbox]
            assert [trigger for trigger, _ in waiting] == ["Started", "Promoted"]
            first.send_signal(signal.SIGKILL)
            first.wait(5)
        assert outbox(world.aws, "brand-api") == ["Started", "Promoted"]  # nothing lost with the process
        receiver.start()
        with world.daemon("second") as second:
            receiver.wait_for(lambda: len(receiver.received) >= 4, what="Started and Promoted to both targets")
            until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
            time.sleep(5 * INTERVAL)  # five more ticks: nothing may be sent again
            stop_with_sigterm(second)
    finally:
        receiver.stop()
    events = [request.json() for request in receiver.at(HOOK_PATH)]
    # The ids the first process wrote down are the ids the second one sent: the same transitions, in order.
    assert [(event["data"]["trigger"], event["id"]) for event in events] == waiting
    assert [headline_of(request) for request in receiver.at(SLACK_PATH)] == [
        "🚀 Rollout started: payments/brand-api",
        "✅ Promoted: payments/brand-api",
    ]


def test_killed_after_the_receiver_has_it_and_before_the_record_says_so_the_repeat_has_the_same_id(
    world: World,
) -> None:
    """The one window for a duplicate (docs/notifications.md, "Exactly once"): it carries the same id."""
    running: list[subprocess.Popen[bytes]] = []

    def kill_on_promoted(request: Received) -> None:
        if request.json()["type"] == "dev.rollouts.lambda.promoted" and running:
            running.pop().send_signal(signal.SIGKILL)  # before the receiver answers: the sender never hears it

    with Receiver() as receiver:
        receiver.on_request = kill_on_promoted
        world.env.update(secret_env(receiver.url))
        write_config(world.config, targets=WEBHOOK)
        world.rollout("brand-api", strategy=canary(50, 1))
        with world.daemon("first") as first:
            running.append(first)
            until(lambda: first.poll() is not None, what="the SIGKILL at the receiver")
        assert outbox(world.aws, "brand-api") == ["Promoted"]  # Started was delivered and forgotten
        with world.daemon("second") as second:
            receiver.wait_for(lambda: len(receiver.received) >= 3, what="Promoted again")
            until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
            time.sleep(5 * INTERVAL)
            stop_with_sigterm(second)
    started, promoted, again = (request.json() for request in receiver.received)
    assert (started["type"], promoted["type"]) == ("dev.rollouts.lambda.started", "dev.rollouts.lambda.promoted")
    assert again == promoted  # the very same event: a receiver drops it by its id


def test_500s_429_with_retry_after_and_dropped_connections_are_retried(world: World) -> None:
    with Receiver() as receiver:
        receiver.script(SLACK_PATH, Answer(500), Answer(503))
        receiver.script(HOOK_PATH, Answer(429, {"Retry-After": "1"}))
        receiver.script(TEAMS_PATH, Answer(drop=True))
        world.env.update(secret_env(receiver.url))
        write_config(world.config, targets=SLACK + TEAMS + WEBHOOK, on="[Started, Promoted]")
        world.rollout("brand-api", strategy=canary(50, 0.4))
        with world.daemon("retries") as process:
            receiver.wait_for(lambda: len(receiver.received) >= 10, what="every attempt")
            until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
            metrics = world.metrics()
            stop_with_sigterm(process)
    slack, teams, hook = (receiver.at(path) for path in (SLACK_PATH, TEAMS_PATH, HOOK_PATH))
    assert [len(slack), len(teams), len(hook)] == [4, 3, 3]
    # Every attempt sends the same body, and the next message waits until the one before it is through.
    started, promoted = "🚀 Rollout started: payments/brand-api", "✅ Promoted: payments/brand-api"
    for requests, attempts in ((slack, 3), (teams, 2)):
        assert [headline_of(request) for request in requests] == [started] * attempts + [promoted]
        assert len({request.body for request in requests[:attempts]}) == 1
    assert [headline_of(request) for request in hook] == ["dev.rollouts.lambda.started"] * 2 + [
        "dev.rollouts.lambda.promoted"
    ]
    assert hook[0].body == hook[1].body
    # Retry-After: 1 is honoured (the backoff alone could be shorter); each attempt is signed afresh.
    assert hook[1].at - hook[0].at >= 1.0
    assert all(verified(request) for request in hook)
    for target in ("team-slack", "team-teams", "ops"):
        assert f'lambda_rollouts_notifications_total{{outcome="sent",target="{target}"}} 2.0' in metrics
        assert f'lambda_rollouts_notifications_total{{outcome="failed",target="{target}"}} 0.0' in metrics


# A receiver that held up the engine would cost each step at least one attemptTimeout (5 s below);
# the steps of a rollout with dead receivers may take at most this much longer than with a live one.
STEP_BOUND = 0.5
PAUSE = 1.0


def step_gaps(aws: Emulator, function: str) -> list[float]:
    """Seconds between the controller's alias writes (20% -> 50% -> 100%), on the emulator's clock."""
    writes = [call.timestamp for call in alias_writes(aws, function, "live") if call.operation == "UpdateAlias"]
    return [later - earlier for earlier, later in pairwise(writes)]


def mean_reconcile_seconds(metrics: str, rollout: str) -> float:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("lambda_rollouts_reconcile_duration_seconds_") and (
                sample.labels.get("name") == rollout
            ):
                values[sample.name.rsplit("_", 1)[1]] = sample.value
    return values["sum"] / values["count"]


def test_dead_receivers_never_slow_the_rollout(world: World) -> None:
    write_config(world.config, targets=SLACK + TEAMS + WEBHOOK, delivery="{attemptTimeout: 5s}")
    measured: dict[str, tuple[list[float], float]] = {}

    def rollout(name: str, env: dict[str, str]) -> str:
        world.source = world.tmp / name
        world.source.mkdir()
        world.env.update(env)
        world.rollout(name, strategy=canary(20, PAUSE, 50, PAUSE))
        with world.daemon(name) as process:
            until(lambda: phase_of(world.aws, name) == "Healthy", what=f"{name} promoted")
            metrics = world.metrics()
            stop_with_sigterm(process)
        measured[name] = (step_gaps(world.aws, name), mean_reconcile_seconds(metrics, name))
        return metrics

    with Receiver() as receiver:
        rollout("live-receivers", secret_env(receiver.url))
    assert len(receiver.received) == 2 * 3  # Started and Promoted, to each target
    with Silent() as silent:
        # Slack and Teams accept the connection and never answer; the webhook's port refuses it.
        dead = {**secret_env(silent.url), "HOOK_URL": f"http://127.0.0.1:{free_port()}{HOOK_PATH}"}
        metrics = rollout("dead-receivers", dead)
        assert silent.connections >= 2
    # None of them got through, and the rollout did not wait for them.
    assert 'lambda_rollouts_notifications_total{outcome="sent",target="ops"} 0.0' in metrics
    assert outbox(world.aws, "dead-receivers") == ["Started", "Promoted"]

    (live_gaps, live_reconcile), (dead_gaps, dead_reconcile) = measured["live-receivers"], measured["dead-receivers"]
    print(
        f"\nstep gaps with live receivers {[round(g, 3) for g in live_gaps]} s, with dead ones "
        f"{[round(g, 3) for g in dead_gaps]} s (pauses of {PAUSE} s, ticks of {INTERVAL} s); mean reconcile "
        f"{live_reconcile * 1000:.1f} ms live, {dead_reconcile * 1000:.1f} ms dead"
    )
    assert len(live_gaps) == len(dead_gaps) == 2
    for live, dead_gap in zip(live_gaps, dead_gaps, strict=True):
        assert PAUSE <= dead_gap <= live + STEP_BOUND
    assert dead_reconcile <= live_reconcile + 0.05  # a reconcile never waits on a receiver (5 s if it did)


def test_sns_messages_arrive_on_a_queue_subscribed_to_the_topic(world: World) -> None:
    sns, sqs = world.aws.client("sns"), world.aws.client("sqs")
    topic = sns.create_topic(Name="lambda-rollouts-audit")["TopicArn"]
    queue = sqs.create_queue(QueueName="rollouts-audit")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    write_config(world.config, targets=f"  - {{name: audit, sns: {{topicArn: '{topic}'}}}}\n")
    world.rollout("brand-api", strategy=canary(50, 0.4))
    with world.daemon("sns") as process:
        until(lambda: phase_of(world.aws, "brand-api") == "Healthy", what="promoted")
        until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
        time.sleep(5 * INTERVAL)
        metrics = world.metrics()
        stop_with_sigterm(process)

    envelopes: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
        envelopes += [json.loads(message["Body"]) for message in batch]
        sqs.delete_message_batch(
            QueueUrl=queue, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in batch]
        )
    assert [envelope["Subject"] for envelope in envelopes] == [
        "[lambda-rollouts] Rollout started: payments/brand-api 2 (RolloutStarted)",
        "[lambda-rollouts] Promoted: payments/brand-api 2 (Promoted)",
    ]
    events = [json.loads(envelope["Message"]) for envelope in envelopes]
    assert [event["type"] for event in events] == ["dev.rollouts.lambda.started", "dev.rollouts.lambda.promoted"]
    assert events[1]["data"]["version"] == "2" and events[1]["data"]["rollout"]["namespace"] == NAMESPACE
    attributes = {name: value["Value"] for name, value in envelopes[1]["MessageAttributes"].items()}
    assert attributes == {
        "trigger": "Promoted",
        "namespace": "payments",
        "rollout": "brand-api",
        "function": "brand-api",
        "alias": "live",
    }
    # Once each at the AWS side too, through the controller's AWS clients (the API-call metrics see it).
    assert [call.status for call in world.aws.calls() if call.operation == "Publish"] == [200, 200]
    publishes = [
        line
        for line in metrics.splitlines()
        if line.startswith("lambda_rollouts_aws_api_calls_total{")
        and all(
            label in line for label in ('account="default"', 'operation="Publish"', 'outcome="ok"', 'service="sns"')
        )
    ]
    assert [line.rsplit(" ", 1)[1] for line in publishes] == ["2.0"], publishes


def token_claims(url: str) -> tuple[dict[str, Any], str]:
    """A link's claims (readable by whoever holds it) and its signature."""
    payload, mac = url.rsplit("/", 1)[1].split(".")
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), mac


def encoded(claims: dict[str, Any]) -> str:
    raw = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_signed_promote_link_works_once_and_replayed_tampered_or_expired_links_change_nothing(
    world: World,
) -> None:
    def waiting_messages() -> list[dict[str, Any]]:
        return [r.json() for r in receiver.at(SLACK_PATH) if headline_of(r).startswith("⏸️ Waiting for promotion")]

    def links(message: dict[str, Any]) -> dict[str, str]:
        (actions,) = [block for block in message["blocks"] if block["type"] == "actions"]
        return {button["action_id"]: button["url"] for button in actions["elements"]}

    with Receiver() as receiver:
        world.env.update(secret_env(receiver.url))
        write_config(world.config, targets=SLACK, links_port=world.metrics_port, on="[WaitingForPromotion]")
        world.rollout("brand-api", strategy=canary(20, None, 50, None))
        with world.daemon("gate", "--log-level", "DEBUG") as process:
            receiver.wait_for(lambda: len(waiting_messages()) == 1, what="waiting at step 2")
            first = links(waiting_messages()[0])
            # A chat client unfurling the link: a confirmation page, never an action.
            status, page = gate("GET", first["promote"])
            assert status == 200 and "<form method='post'>" in page and "Issued to <b>team-slack</b>" in page
            assert alias_routing(world.aws, "brand-api", "live") == ("1", {"2": 0.2})

            status, page = gate("POST", first["promote"])
            assert (status, "Promote requested" in page) == (200, True)
            receiver.wait_for(lambda: len(waiting_messages()) == 2, what="waiting at step 4")
            assert alias_routing(world.aws, "brand-api", "live") == ("1", {"2": 0.5})
            until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
            record = record_of(world.aws, "brand-api")
            (requested,) = [entry for entry in record.history if entry.outcome == "Requested"]
            assert (requested.reason, requested.by, requested.version) == ("promote", "link:team-slack", "2")

            second = links(waiting_messages()[1])
            claims, mac = token_claims(second["promote"])
            old_claims, old_mac = token_claims(first["promote"])
            base = first["promote"].rsplit("/", 1)[0]
            expired = GateSigner(key=SIGNING_KEY.encode(), base_url=f"http://127.0.0.1:{world.metrics_port}", ttl=60)
            refused = {
                "replayed": first["promote"],
                # The first link re-aimed at the pause the rollout waits at now, its signature kept.
                "tampered": f"{base}/{encoded({**old_claims, 's': claims['s']})}.{old_mac}",
                # Well signed, for the pause it waits at, but past its expiry.
                "expired": expired.url(
                    expired.sign(
                        rollout_key=claims["r"],
                        attempt=claims["a"],
                        step=claims["s"],
                        verb=Verb.PROMOTE,
                        approver=claims["p"],
                        expires_at=time.time() - 1,
                    )
                ),
            }
            world.aws.clear_calls()
            answers = {why: gate("POST", url) for why, url in refused.items()}
            time.sleep(5 * INTERVAL)  # five ticks: a request that got through would be acted on by now
            writes = write_calls(world.aws)
            stop_with_sigterm(process)
    assert {why: status for why, (status, _) in answers.items()} == {"replayed": 409, "tampered": 403, "expired": 410}
    pages = {why: page for why, (_, page) in answers.items()}
    assert "already used" in pages["replayed"] and "altered" in pages["tampered"] and "expired at" in pages["expired"]
    assert writes == [], writes
    assert alias_routing(world.aws, "brand-api", "live") == ("1", {"2": 0.5})
    assert record_of(world.aws, "brand-api").history == record.history
    assert not any(key.startswith("lambda-rollouts/request") for key in function_tags(world.aws, "brand-api"))
    assert mac != old_mac
    assert_no_secret("the daemon's output", world.output("gate"), first["promote"].rsplit("/", 1)[1])


def test_run_once_sends_nothing_and_leaves_the_outbox_to_the_next_daemon(world: World) -> None:
    with Receiver() as receiver:
        world.env.update(secret_env(receiver.url))
        write_config(world.config, targets=WEBHOOK)
        world.rollout("brand-api", strategy=canary(50, None))
        once = [*CLI, "run", "--source", str(world.source), "--once", "--lease", "off"]
        done = subprocess.run([*once, "--notifications", str(world.config)], env=world.env, capture_output=True)
        assert done.returncode == 0, done.stderr
        # The pass moved the alias to 50% and began the pause in the same record: both transitions wait.
        waiting = ["Started", "WaitingForPromotion"]
        assert outbox(world.aws, "brand-api") == waiting and receiver.received == []
        assert b"--once sends no notifications" in done.stderr
        # A pass without notifications configured keeps what waits in the outbox, too.
        done = subprocess.run(once, env=world.env, capture_output=True)
        assert done.returncode == 0, done.stderr
        assert outbox(world.aws, "brand-api") == waiting
        with world.daemon("daemon") as process:
            receiver.wait_for(lambda: len(receiver.received) >= 2, what="Started and WaitingForPromotion")
            until(lambda: not outbox(world.aws, "brand-api"), what="the outbox emptied")
            time.sleep(5 * INTERVAL)
            stop_with_sigterm(process)
    assert [request.json()["type"] for request in receiver.received] == [
        "dev.rollouts.lambda.started",
        "dev.rollouts.lambda.waitingforpromotion",
    ]
