"""Alarm state changes through EventBridge and SQS, against the strict emulator over HTTP.

``AlarmEventsSetup`` creates the queue, the rule and the queue policy once and then only reads;
``sync`` follows the watched alarms with one PutRule per change of pattern; the consumer gets a
``SetAlarmState`` within a round trip, degrades with a reason when its queue is deleted and recovers
by itself when it is back (re-created in ``auto`` mode, re-made by someone else for a given URL);
what arrived while no consumer ran is delivered when one starts; duplicates are delivered once.
Poll mode's safety net: an ALARM that the emulator's own evaluation turned back to OK before the
next poll is still found in the alarm history. Wall-clock figures are printed, asserted generously.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest

from controller.analysis.alarm_events import (
    QUEUE_NAME,
    RETENTION_SECONDS,
    RULE_NAME,
    AlarmChange,
    AlarmEventConsumer,
    AlarmEventsSetup,
    ConsumerHealth,
    GivenQueue,
    HealthState,
    Matching,
    QueueSource,
    queue_policy,
)
from controller.aws import AwsClients, AwsSettings, Budget, InvalidRequest, NotFound, make_clients
from controller.emulator import Emulator
from tests.integration.helpers import FakeClock, put_hand_alarm, set_alarm

T = TypeVar("T")

FAST = {
    "sqs": 1000.0,
    "events": 1000.0,
    "cloudwatch.describe_alarms": 1000.0,
    "cloudwatch.describe_alarm_history": 1000.0,
}
WRITES = {"CreateQueue", "SetQueueAttributes", "PutRule", "PutTargets", "RemoveTargets", "DeleteRule", "DeleteQueue"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def manual(aws: Emulator) -> Emulator:
    """Alarms move only by ``SetAlarmState``: the evaluation timer is stopped."""
    aws.configure(alarm_evaluation=False)
    return aws


@pytest.fixture
def clients(aws: Emulator) -> AwsClients:
    return make_clients(AwsSettings(endpoint_url=aws.url, region="us-east-1", max_attempts=1), budget=Budget(FAST))


@pytest.fixture
def cw(aws: Emulator) -> Any:
    return aws.client("cloudwatch")


def setup_of(clients: AwsClients, **options: Any) -> AlarmEventsSetup:
    return AlarmEventsSetup(events=clients.events, sqs=clients.sqs, **options)


def operations(aws: Emulator, service: str | None = None) -> list[str]:
    return [c.operation for c in aws.calls() if service is None or c.service == service]


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Received:
    """The consumer's callback: every change it was handed, with the wall-clock instant."""

    def __init__(self) -> None:
        self.changes: list[AlarmChange] = []
        self.instants: list[float] = []

    def __call__(self, change: AlarmChange) -> None:
        self.changes.append(change)
        self.instants.append(time.time())

    def states(self, name: str) -> list[str]:
        return [c.state for c in self.changes if c.name == name]


class HealthLog(logging.Handler):
    """Every health the consumer logged (its log line on each change of health)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("alarm events "):
            self.lines.append(message)


@pytest.fixture
def health_log() -> Any:
    handler = HealthLog()
    logger = logging.getLogger("controller.analysis.alarm_events")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


@asynccontextmanager
async def consuming(
    clients: AwsClients,
    queue: QueueSource,
    on_change: Callable[[AlarmChange], Awaitable[None] | None],
    watched: list[str],
    **options: Any,
) -> AsyncIterator[AlarmEventConsumer]:
    """A consumer running in its own task; stopped (and awaited) on exit."""
    consumer = AlarmEventConsumer(sqs=clients.sqs, queue=queue, on_change=on_change, watched=watched, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


def healthy(consumer: AlarmEventConsumer) -> Callable[[], bool]:
    return lambda: consumer.health.state is HealthState.HEALTHY


def queue_depth(aws: Emulator, url: str) -> int:
    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


# ---- the adapters --------------------------------------------------------------------------------------------------


def test_sqs_and_events_adapters_on_the_wire(aws: Emulator, clients: AwsClients) -> None:
    sqs = aws.client("sqs")

    async def scenario() -> None:
        assert await clients.sqs.queue_url("missing") is None
        assert await clients.events.describe_rule("missing") is None
        url = await clients.sqs.create_queue(name="adapter-test", attributes={"VisibilityTimeout": "60"})
        assert await clients.sqs.queue_url("adapter-test") == url
        assert (await clients.sqs.queue_attributes(url, ["VisibilityTimeout"])) == {"VisibilityTimeout": "60"}
        for n in range(12):
            await asyncio.to_thread(sqs.send_message, QueueUrl=url, MessageBody=f"m{n}")
        received = [*await clients.sqs.receive(url, wait_seconds=0), *await clients.sqs.receive(url, wait_seconds=0)]
        assert len(received) == 12  # at most 10 a call
        aws.clear_calls()
        assert await clients.sqs.delete_messages(url, [m.receipt_handle for m in received]) == []
        assert operations(aws) == ["DeleteMessageBatch", "DeleteMessageBatch"]  # 10 entries a call
        assert await clients.sqs.receive(url, wait_seconds=0) == []
        with pytest.raises(ValueError):
            await clients.sqs.receive(url, max_messages=11)
        with pytest.raises(ValueError):
            await clients.sqs.receive(url, wait_seconds=21)
        await asyncio.to_thread(sqs.delete_queue, QueueUrl=url)
        with pytest.raises(NotFound):
            await clients.sqs.receive(url, wait_seconds=0)
        with pytest.raises(InvalidRequest):
            await clients.events.put_rule(name="bad", event_pattern="{not json")

    run(scenario())


# ---- auto: the queue, the rule, the policy --------------------------------------------------------------------


def test_auto_setup_creates_queue_rule_and_policy_and_a_second_setup_changes_nothing(
    aws: Emulator, clients: AwsClients
) -> None:
    queue = run(setup_of(clients).ensure(["checkout-errors", "checkout-latency"]))
    sqs, events = aws.client("sqs"), aws.client("events")
    assert queue.url == sqs.get_queue_url(QueueName=QUEUE_NAME)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])["Attributes"]
    assert attributes["QueueArn"] == queue.arn
    assert int(attributes["MessageRetentionPeriod"]) == RETENTION_SECONDS == 4 * 24 * 3600
    assert attributes["SqsManagedSseEnabled"] == "true"
    rule = events.describe_rule(Name=RULE_NAME)
    assert json.loads(attributes["Policy"]) == queue_policy(queue_arn=queue.arn, rule_arn=rule["Arn"])
    statement = json.loads(attributes["Policy"])["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule["Arn"]}}
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": ["checkout-errors", "checkout-latency"]},
    }
    assert [(t["Arn"], "Input" in t) for t in events.list_targets_by_rule(Rule=RULE_NAME)["Targets"]] == [
        (queue.arn, False)
    ]

    aws.clear_calls()
    again = run(setup_of(clients).ensure(["checkout-latency", "checkout-errors"]))  # a restarted controller
    assert again == queue
    assert sorted(operations(aws)) == ["DescribeRule", "GetQueueAttributes", "GetQueueUrl", "ListTargetsByRule"]


def test_auto_setup_repairs_a_queue_and_rule_that_differ(aws: Emulator, clients: AwsClients) -> None:
    sqs, events = aws.client("sqs"), aws.client("events")
    url = sqs.create_queue(
        QueueName=QUEUE_NAME, Attributes={"MessageRetentionPeriod": "60", "SqsManagedSseEnabled": "false"}
    )["QueueUrl"]
    events.put_rule(Name=RULE_NAME, EventPattern=json.dumps({"source": ["aws.cloudwatch"]}), State="DISABLED")
    aws.clear_calls()
    queue = run(setup_of(clients).ensure(["checkout-errors"]))
    assert queue.url == url
    assert sorted(op for op in operations(aws) if op in WRITES) == ["PutRule", "PutTargets", "SetQueueAttributes"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["MessageRetentionPeriod"], attributes["SqsManagedSseEnabled"]) == ("345600", "true")
    rule = events.describe_rule(Name=RULE_NAME)
    assert rule["State"] == "ENABLED"
    assert json.loads(rule["EventPattern"])["detail"] == {"alarmName": ["checkout-errors"]}


def test_the_pattern_follows_the_alarm_set_with_one_put_rule_per_change(aws: Emulator, clients: AwsClients) -> None:
    setup = setup_of(clients)
    events = aws.client("events")

    async def scenario() -> list[tuple[bool, list[str]]]:
        steps: list[tuple[bool, list[str]]] = []
        await setup.ensure(["a-errors"])
        for names in (["a-errors"], ["a-errors", "b-errors"], ["b-errors", "a-errors"], []):
            aws.clear_calls()
            wrote = await setup.sync(names)
            steps.append((wrote, operations(aws)))
        return steps

    steps = run(scenario())
    assert steps == [(False, []), (True, ["PutRule"]), (False, []), (True, ["PutRule"])]
    rule = events.describe_rule(Name=RULE_NAME)
    assert rule["State"] == "DISABLED"  # no watched alarm: nothing is delivered
    assert setup.pattern is not None and setup.pattern.matching is Matching.NONE
    run(setup.sync(["b-errors"]))
    assert json.loads(events.describe_rule(Name=RULE_NAME)["EventPattern"])["detail"] == {"alarmName": ["b-errors"]}


def test_names_beyond_the_pattern_limit_become_prefixes_and_the_consumer_filters(
    manual: Emulator, clients: AwsClients, cw: Any
) -> None:
    watched = [f"payments-api-{n:02d}-errors" for n in range(8)]
    for name in [*watched, "payments-api-other", "search-errors"]:
        put_hand_alarm(cw, name)
    setup = setup_of(clients, pattern_limit=200)
    received = Received()

    async def scenario() -> None:
        queue = await setup.ensure(watched)
        async with consuming(clients, setup, received, watched, wait_seconds=1) as consumer:
            await until(healthy(consumer))
            for name in ("payments-api-other", "search-errors", "payments-api-03-errors"):
                await asyncio.to_thread(set_alarm, cw, name, "ALARM")
            await until(lambda: bool(received.changes))
            await until(lambda: queue_depth(manual, queue.url) == 0)

    run(scenario())
    assert setup.pattern is not None and setup.pattern.matching is Matching.PREFIXES
    assert setup.pattern.prefixes == ("payments-api-0",)
    assert len(setup.pattern.text) <= 200
    # The prefix rule let the unwatched "payments-api-other" through, the consumer dropped (and deleted) it;
    # "search-errors" matched no prefix at all.
    assert [(c.name, c.state) for c in received.changes] == [("payments-api-03-errors", "ALARM")]


# ---- the consumer -------------------------------------------------------------------------------------------------


def test_a_state_change_reaches_the_callback_within_a_round_trip(
    manual: Emulator, clients: AwsClients, cw: Any
) -> None:
    put_hand_alarm(cw, "checkout-errors")
    setup = setup_of(clients)
    received = Received()
    sent: list[float] = []

    async def scenario() -> None:
        queue = await setup.ensure(["checkout-errors"])
        async with consuming(clients, setup, received, ["checkout-errors"]) as consumer:  # 20 s long polls
            await until(healthy(consumer))
            await asyncio.sleep(0.2)  # the long poll is under way
            for state in ("ALARM", "OK", "ALARM"):
                sent.append(time.time())
                await asyncio.to_thread(set_alarm, cw, "checkout-errors", state)
                await until(lambda: len(received.changes) == len(sent))
            await until(lambda: queue_depth(manual, queue.url) == 0)

    run(scenario())
    latencies = [arrived - at for arrived, at in zip(received.instants, sent, strict=True)]
    print(f"\nSetAlarmState -> callback: {', '.join(f'{s * 1000:.1f} ms' for s in latencies)}")
    assert max(latencies) < 3.0
    assert received.states("checkout-errors") == ["ALARM", "OK", "ALARM"]
    first = received.changes[0]
    assert (first.previous, first.reason) == ("INSUFFICIENT_DATA", "test")
    state = cw.describe_alarms(AlarmNames=["checkout-errors"])["MetricAlarms"][0]
    assert received.changes[-1].at == pytest.approx(state["StateUpdatedTimestamp"].timestamp(), abs=0.001)
    assert all(0 <= c.received_at - c.at < 3.0 for c in received.changes)


def test_an_event_that_arrived_while_no_consumer_ran_is_delivered_when_one_starts(
    manual: Emulator, clients: AwsClients, cw: Any
) -> None:
    put_hand_alarm(cw, "checkout-errors")
    setup = setup_of(clients)
    queue = run(setup.ensure(["checkout-errors"]))
    set_alarm(cw, "checkout-errors", "ALARM")  # the controller is down
    set_alarm(cw, "checkout-errors", "OK")
    assert queue_depth(manual, queue.url) == 2
    received = Received()

    async def scenario() -> None:
        async with consuming(clients, setup_of(clients), received, ["checkout-errors"], wait_seconds=1):
            await until(lambda: len(received.changes) == 2)
            await until(lambda: queue_depth(manual, queue.url) == 0)

    run(scenario())
    assert received.states("checkout-errors") == ["ALARM", "OK"]


def test_duplicates_are_delivered_once_and_a_stale_ok_is_dropped_but_a_stale_alarm_is_not(
    manual: Emulator, clients: AwsClients, cw: Any
) -> None:
    put_hand_alarm(cw, "checkout-errors")
    setup = setup_of(clients)
    queue = run(setup.ensure(["checkout-errors"]))
    sqs = manual.client("sqs")
    for state in ("ALARM", "OK", "ALARM"):
        set_alarm(cw, "checkout-errors", state)
    bodies = [m["Body"] for m in sqs.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10)["Messages"]]
    assert len(bodies) == 3
    sqs.purge_queue(QueueUrl=queue.url)
    alarm_1, ok, alarm_2 = bodies
    # At least once, in any order: the newest first, then an older OK and an older ALARM, each twice.
    for body in (alarm_2, alarm_2, ok, alarm_1, ok, alarm_1, alarm_2):
        sqs.send_message(QueueUrl=queue.url, MessageBody=body)
    received = Received()

    async def scenario() -> None:
        async with consuming(clients, setup, received, ["checkout-errors"], wait_seconds=1):
            await until(lambda: queue_depth(manual, queue.url) == 0)

    run(scenario())
    stamps = [json.loads(b)["detail"]["state"]["timestamp"] for b in (alarm_1, alarm_2)]
    assert received.states("checkout-errors") == ["ALARM", "ALARM"]  # the newest, then the older ALARM
    assert len({(c.name, c.at) for c in received.changes}) == 2
    assert received.changes[0].at > received.changes[1].at
    assert stamps[0] < stamps[1]


def test_a_failing_callback_leaves_the_message_to_sqs(manual: Emulator, clients: AwsClients, cw: Any) -> None:
    put_hand_alarm(cw, "checkout-errors")
    setup = setup_of(clients)
    queue = run(setup.ensure(["checkout-errors"]))
    manual.client("sqs").set_queue_attributes(QueueUrl=queue.url, Attributes={"VisibilityTimeout": "1"})
    set_alarm(cw, "checkout-errors", "ALARM")
    calls: list[AlarmChange] = []

    async def flaky(change: AlarmChange) -> None:
        calls.append(change)
        if len(calls) == 1:
            raise RuntimeError("the engine was busy")

    async def scenario() -> None:
        async with consuming(clients, setup, flaky, ["checkout-errors"], wait_seconds=1):
            await until(lambda: len(calls) == 2)  # received again after the visibility timeout
            await until(lambda: queue_depth(manual, queue.url) == 0)

    run(scenario())
    assert (calls[0].name, calls[0].at) == (calls[1].name, calls[1].at)
    assert calls[1].received_at - calls[0].received_at >= 0.9


def test_a_deleted_queue_degrades_the_consumer_and_auto_setup_brings_it_back(
    manual: Emulator, clients: AwsClients, cw: Any, health_log: HealthLog
) -> None:
    put_hand_alarm(cw, "checkout-errors")
    setup = setup_of(clients)
    received = Received()
    seen: list[ConsumerHealth] = []

    async def scenario() -> None:
        queue = await setup.ensure(["checkout-errors"])
        async with consuming(
            clients, setup, received, ["checkout-errors"], wait_seconds=1, backoff_initial=0.05, backoff_max=0.2
        ) as consumer:
            await until(healthy(consumer))
            await asyncio.to_thread(manual.client("sqs").delete_queue, QueueUrl=queue.url)
            await until(lambda: any("degraded" in line for line in health_log.lines))
            await until(healthy(consumer))
            seen.append(consumer.health)
            await asyncio.to_thread(set_alarm, cw, "checkout-errors", "ALARM")
            await until(lambda: bool(received.changes))

    run(scenario())
    degraded = [line for line in health_log.lines if "degraded" in line]
    print("\n" + "\n".join(health_log.lines))
    assert "does not exist" in degraded[0] and QUEUE_NAME in degraded[0]
    assert health_log.lines[-1].startswith("alarm events healthy")
    assert seen[0].reason.startswith("consuming ")
    attributes = manual.client("sqs").get_queue_attributes(
        QueueUrl=manual.client("sqs").get_queue_url(QueueName=QUEUE_NAME)["QueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    assert "Policy" in attributes and attributes["MessageRetentionPeriod"] == "345600"  # re-created as made
    assert received.states("checkout-errors") == ["ALARM"]


def test_a_given_queue_deleted_stays_degraded_until_it_is_back_and_rules_are_never_touched(
    manual: Emulator, clients: AwsClients, cw: Any
) -> None:
    put_hand_alarm(cw, "checkout-errors")
    sqs, events = manual.client("sqs"), manual.client("events")
    url = sqs.create_queue(QueueName="platform-alarm-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="platform-alarms", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="platform-alarms", Targets=[{"Id": "q", "Arn": arn}])
    manual.clear_calls()
    received = Received()
    states: list[ConsumerHealth] = []
    clock = FakeClock(1_000.0)
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)  # the back-off asked for, served in a few milliseconds
        clock.advance(seconds)
        await asyncio.sleep(0.02)

    async def scenario() -> None:
        given = GivenQueue(sqs=clients.sqs, url=url)
        async with consuming(
            clients, given, received, ["checkout-errors"], wait_seconds=1, clock=clock, sleep=sleep, backoff_max=8.0
        ) as consumer:
            await until(healthy(consumer))
            assert consumer.health.since == 1_000.0
            await asyncio.to_thread(sqs.delete_queue, QueueUrl=url)
            await until(lambda: len(delays) >= 6)  # several retries: nobody re-creates a given queue
            states.append(consumer.health)
            await asyncio.to_thread(sqs.create_queue, QueueName="platform-alarm-events")
            await until(healthy(consumer))
            states.append(consumer.health)
            await asyncio.to_thread(set_alarm, cw, "checkout-errors", "ALARM")
            await until(lambda: bool(received.changes))

    run(scenario())
    degraded, back = states
    assert degraded.state is HealthState.DEGRADED
    assert degraded.reason == f"the alarm-events queue {url} does not exist (deleted?)"
    assert degraded.since == 1_000.0  # the clock moves only by the back-off: degraded before the first retry
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling from 1 s, capped
    assert back.since == 1_000.0 + sum(delays)
    assert operations(manual, "events") == []  # the platform team's rule is theirs
    assert operations(manual, "sqs").count("CreateQueue") == 1  # the one the test made
    assert received.states("checkout-errors") == ["ALARM"]
    assert received.changes[0].received_at == back.since


def test_throttling_degrades_the_consumer_which_keeps_its_queue_and_recovers(
    manual: Emulator, cw: Any, health_log: HealthLog
) -> None:
    from controller.emulator.proxy import FaultProxy, FaultRule

    put_hand_alarm(cw, "checkout-errors")
    sqs, events = manual.client("sqs"), manual.client("events")
    url = sqs.create_queue(QueueName="platform-alarm-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="platform-alarms", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="platform-alarms", Targets=[{"Id": "q", "Arn": arn}])
    proxy = FaultProxy.start(
        manual.url, rules=[FaultRule(action="throttle", service="sqs", operation="ReceiveMessage", count=2)]
    )
    received = Received()
    try:
        throttled = make_clients(
            AwsSettings(endpoint_url=proxy.url, region="us-east-1", max_attempts=1), budget=Budget(FAST)
        )

        async def scenario() -> None:
            given = GivenQueue(sqs=throttled.sqs, url=url)
            async with consuming(
                throttled, given, received, ["checkout-errors"], wait_seconds=1, backoff_initial=0.01
            ) as consumer:
                await until(lambda: any("degraded" in line for line in health_log.lines))
                await until(healthy(consumer))
                await asyncio.to_thread(set_alarm, cw, "checkout-errors", "ALARM")
                await until(lambda: bool(received.changes))

        run(scenario())
        counts = proxy.counts()
    finally:
        proxy.stop()
    assert health_log.lines[:2] == [
        f"alarm events degraded: SQS is throttling ReceiveMessage on the alarm-events queue {url}; "
        "polling alone sees alarms until it recovers",
        f"alarm events healthy: consuming {url}",
    ]
    assert len(health_log.lines) == 2  # two throttled polls, one line
    # (botocore's adaptive retry mode then slows this client to about one call in 2-3 s for a while)
    assert counts.get("sqs:GetQueueAttributes") == 1  # throttling does not make it check the queue again
    assert received.states("checkout-errors") == ["ALARM"]


def test_a_given_queue_that_does_not_exist_is_reported(aws: Emulator, clients: AwsClients) -> None:
    with pytest.raises(NotFound):
        run(GivenQueue(sqs=clients.sqs, url=f"{aws.url}/123456789012/missing").ready())


# ---- poll mode: no missed transition ------------------------------------------------------------------------------


def test_an_alarm_that_went_to_alarm_and_back_between_two_polls_is_found_in_the_history(
    aws: Emulator, clients: AwsClients, cw: Any
) -> None:
    """The emulator's own evaluation ends the ALARM: a state set by hand holds until the next period's end.

    ``TreatMissingData: notBreaching`` with no data evaluates to OK at every period's end (0.6 s here),
    so an ALARM set by hand lasts less than one period, as a short spike does in AWS.
    """
    from tests.integration.helpers import put_errors_alarm

    put_errors_alarm(cw, "spiky", TreatMissingData="notBreaching")
    put_errors_alarm(cw, "flappy", TreatMissingData="notBreaching")
    put_errors_alarm(cw, "steady", TreatMissingData="notBreaching")

    def state(name: str) -> str:
        return str(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["StateValue"])

    aws.wait_for(lambda: all(state(n) == "OK" for n in ("spiky", "flappy", "steady")))
    first_poll = time.time()
    assert run(clients.cloudwatch.alarms_in_alarm()) == frozenset()
    assert run(clients.cloudwatch.recent_alarm_transitions(first_poll)) == {}
    set_alarm(cw, "spiky", "ALARM")
    set_alarm(cw, "flappy", "INSUFFICIENT_DATA")  # OK -> INSUFFICIENT_DATA -> OK is no ALARM
    aws.wait_for(lambda: state("spiky") == "OK" and state("flappy") == "OK", timeout=5)
    aws.clear_calls()

    in_alarm = run(clients.cloudwatch.alarms_in_alarm())
    transitions = run(clients.cloudwatch.recent_alarm_transitions(first_poll))
    assert in_alarm == frozenset()  # the second poll alone would have missed it
    assert set(transitions) == {"spiky"}
    assert [c.operation for c in aws.calls()] == ["DescribeAlarms", "DescribeAlarmHistory"]  # one call each
    history = cw.describe_alarm_history(AlarmName="spiky", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    left = history[0]  # newest first: ALARM -> OK, by the evaluation
    assert left["HistorySummary"] == "Alarm updated from ALARM to OK"
    assert transitions["spiky"] == left["Timestamp"].timestamp()
    assert run(clients.cloudwatch.recent_alarm_transitions(time.time() + 1)) == {}
