"""SNS notifications through the project's AWS adapter and budget to the strict emulator: the message
arrives on an SQS queue subscribed to the topic (standard and FIFO), with its subject and filterable
attributes; a missing topic fails without retries; and neither the signing key nor a link's token
reaches a log line, botocore's DEBUG output of the request body included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from controller.aws import AwsClients, AwsSettings, Budget, make_clients
from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.emulator import Emulator
from controller.notify import Transition, Trigger, build_notifier, parse_notifications
from controller.notify.config import NotificationConfig
from controller.notify.secrets import SecretReader
from controller.observability.logs import configure_logging

SIGNING_KEY = "sns-test-signing-key-0123456789abcdef-xyz"
ROLLED_BACK = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.ROLLED_BACK,
    attempt="43@1767225000",
    at=1767225600.0,
    version="43",
    stable_version="42",
    weight=10,
    step=1,
    steps=2,
    phase=Phase.ROLLED_BACK,
    reason=Reason.ALARM_FIRED,
    message="alarm brand-api-errors in ALARM: rolled back to 42",
)
WAITING = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.WAITING_FOR_PROMOTION,
    attempt="44@1767226000",
    at=1767226000.0,
    version="44",
    stable_version="43",
    weight=25,
    step=2,
    steps=4,
    discriminator="2",
)


@dataclass
class Calls:
    """An ``ApiObserver``: the adapter's calls reach the same metrics as every other AWS call."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        self.calls.append((service, operation, outcome))

    def budget_wait(self, *, family: str, seconds: float) -> None:
        return None

    def api_retry(self, *, service: str, operation: str, reason: str) -> None:
        return None


@dataclass
class Outcomes:
    finished: list[tuple[str, str]] = field(default_factory=list)

    def notification_target(self, *, target: str) -> None:
        return None

    def notification(self, *, target: str, outcome: str) -> None:
        self.finished.append((target, outcome))

    def notification_dropped(self, *, target: str) -> None:
        return None


def topic_with_queue(aws: Emulator, name: str, *, fifo: bool = False) -> tuple[str, str]:
    sns, sqs = aws.client("sns"), aws.client("sqs")
    attributes = {"FifoTopic": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    topic = sns.create_topic(Name=f"{name}.fifo" if fifo else name, Attributes=attributes)["TopicArn"]
    queue_attributes = {"FifoQueue": "true"} if fifo else {}
    queue = sqs.create_queue(QueueName=f"{name}-inbox.fifo" if fifo else f"{name}-inbox", Attributes=queue_attributes)
    url = queue["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return topic, url


def inbox(aws: Emulator, queue_url: str) -> list[dict[str, Any]]:
    messages = aws.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def config_for(*topics: str, links: bool = False) -> NotificationConfig:
    targets = "\n".join(f"  - {{name: t{n}, sns: {{topicArn: '{topic}'}}}}" for n, topic in enumerate(topics))
    subscriptions = "\n".join(
        f"  - {{target: t{n}, on: [RolledBack, WaitingForPromotion]}}" for n in range(len(topics))
    )
    text = f"targets:\n{targets}\nsubscriptions:\n{subscriptions}\n"
    if links:
        text += "links: {baseUrl: 'https://rollouts.example.com', signingKeyFrom: {env: GATE_KEY}}\n"
    config, errors = parse_notifications(text, file="n.yaml")
    assert [str(error) for error in errors] == []
    assert config is not None
    return config


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def clients(aws: Emulator, calls: Calls) -> AwsClients:
    return make_clients(
        AwsSettings(endpoint_url=aws.url, region="us-east-1", max_attempts=2),
        budget=Budget({"sns": 1000.0}),
        observer=calls,
    )


async def test_a_message_published_to_the_topic_arrives_on_the_subscribed_queue(
    aws: Emulator, clients: AwsClients, calls: Calls
) -> None:
    topic, queue = topic_with_queue(aws, "rollouts")
    fifo_topic, fifo_queue = topic_with_queue(aws, "ordered", fifo=True)
    outcomes = Outcomes()
    notifier = build_notifier(
        config_for(topic, fifo_topic), secrets=SecretReader(environ={}), sns=clients.sns, observer=outcomes
    )
    async with notifier:
        assert notifier.offer(ROLLED_BACK) == ("t0", "t1")
        await asyncio.wait_for(notifier.idle(), 30)
    assert outcomes.finished == [("t0", "sent"), ("t1", "sent")] or sorted(outcomes.finished) == [
        ("t0", "sent"),
        ("t1", "sent"),
    ]
    for queue_url in (queue, fifo_queue):
        (envelope,) = inbox(aws, queue_url)
        assert envelope["Subject"] == "[lambda-rollouts] Rolled back: payments/brand-api 43 (AlarmFired)"
        event = json.loads(envelope["Message"])
        assert (event["specversion"], event["id"], event["type"]) == (
            "1.0",
            ROLLED_BACK.id,
            "dev.rollouts.lambda.rolledback",
        )
        assert event["data"]["reason"] == "AlarmFired" and event["data"]["stableVersion"] == "42"
        attributes = {name: value["Value"] for name, value in envelope["MessageAttributes"].items()}
        assert attributes == {
            "trigger": "RolledBack",
            "namespace": "payments",
            "rollout": "brand-api",
            "function": "brand-api",
            "alias": "prod",
        }
    # Through the adapter, so under the API budget and seen by the API-call metrics.
    assert calls.calls.count(("sns", "Publish", "ok")) == 2


async def test_a_missing_topic_fails_at_once_without_retries(aws: Emulator, clients: AwsClients, calls: Calls) -> None:
    outcomes = Outcomes()
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    notifier = build_notifier(config_for(missing), secrets=SecretReader(environ={}), sns=clients.sns, observer=outcomes)
    async with notifier:
        notifier.offer(ROLLED_BACK)
        await asyncio.wait_for(notifier.idle(), 30)
    assert outcomes.finished == [("t0", "failed")]
    assert [call for call in calls.calls if call[1] == "Publish"] == [("sns", "Publish", "not_found")]


async def test_neither_key_nor_token_reaches_a_log_line_botocore_included(
    aws: Emulator, clients: AwsClients, caplog: pytest.LogCaptureFixture
) -> None:
    topic, queue = topic_with_queue(aws, "gated")
    stream = io.StringIO()
    handler = configure_logging("json", logging.DEBUG, stream=stream)  # the daemon's own handler and filter
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        config = config_for(topic, links=True)
        notifier = build_notifier(config, secrets=SecretReader(environ={"GATE_KEY": SIGNING_KEY}), sns=clients.sns)
        async with notifier:
            notifier.offer(WAITING)
            await asyncio.wait_for(notifier.idle(), 30)
    finally:
        logging.getLogger().removeHandler(handler)
    (envelope,) = inbox(aws, queue)
    links = json.loads(envelope["Message"])["data"]["links"]
    tokens = [links["promote"].rsplit("/", 1)[1], links["abort"].rsplit("/", 1)[1]]
    captured = "\n".join(record.getMessage() for record in caplog.records)
    assert any(record.name.startswith("botocore") for record in caplog.records)  # DEBUG really was on
    assert SIGNING_KEY not in captured and SIGNING_KEY not in stream.getvalue()
    # botocore logs request bodies at DEBUG, links included; the daemon's handler redacts gate tokens.
    written = stream.getvalue()
    assert "/v1/gate/[REDACTED]" in written
    assert all(token not in written for token in tokens)
    # Our own lines never carry them in the first place.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("controller"))
    assert all(token not in ours for token in tokens)
