"""Shared helpers for the engine and CLI integration tests: documents, a driven engine, the call log.

Tests drive the engine tick by tick with a fake clock (``EngineHarness``), so a 5-minute preset runs
in milliseconds and no test sleeps; only the subprocess tests use real (short) intervals, and they
poll with deadlines (``daemon``, ``stop_with_sigterm``, ``http_ok``). What AWS saw is checked in the
strict emulator's call log, never in mocks. Documents and the errors alarm live in ``documents``
(shared with the benchmark, which must not import the emulator) and are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.core.codec import encode_request, request_key
from controller.core.types import Event, Phase, Request, Status, Verb
from controller.document.model import RolloutSpec
from controller.document.ownership_config import OwnershipPolicy
from controller.emulator import Emulator
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.sink import AliasWritten, Reconciled
from controller.sources.files import FileSource

# Re-exported: tests import every helper from here.
from tests.integration.documents import canary as canary
from tests.integration.documents import paused_rollout_document as paused_rollout_document
from tests.integration.documents import put_errors_alarm as put_errors_alarm
from tests.integration.documents import rollout_document as rollout_document
from tests.integration.documents import write_document as write_document

T = TypeVar("T")

#: Alarm periods run 100 times faster than CloudWatch's: a 60 s alarm is evaluated every 0.6 s, over
#: datapoints bucketed in 0.6 s periods (docs/emulator.md, "Alarm evaluation").
ALARM_PERIOD_SCALE = 0.01
#: The settings every test starts from (the ``aws`` fixture puts them back before each test).
EMULATOR_SETTINGS: dict[str, Any] = {
    "provisioned_concurrency_delay": 0.3,
    "alarm_period_scale": ALARM_PERIOD_SCALE,
    "alarm_evaluation": True,
    "invoke_seed": None,
    "table_creation_delay": 0.2,
}

# Operations that change AWS state: none of them may appear when the input is bad.
WRITE_OPERATIONS = frozenset(
    {
        "CreateAlias",
        "UpdateAlias",
        "DeleteAlias",
        "PublishVersion",
        "TagResource",
        "UntagResource",
        "PutProvisionedConcurrencyConfig",
        "PutFunctionConcurrency",
    }
)


def seed_alias(
    emulator: Emulator,
    function: str,
    *,
    versions: int = 2,
    alias: str = "live",
    version: str = "1",
    tags: dict[str, str] | None = None,
) -> None:
    """Where most rollouts start: ``function`` with ``versions`` published versions and ``alias`` on ``version``."""
    emulator.seed_function(function, versions=versions, tags=tags)
    emulator.client("lambda").create_alias(FunctionName=function, Name=alias, FunctionVersion=version)


def put_hand_alarm(cloudwatch: Any, name: str) -> None:
    """An errors alarm only the test moves (``set_alarm``), with no data behind it.

    ``TreatMissingData: ignore`` makes the emulator's evaluation (at the end of each 0.6 s period: a
    60 s period at the tests' alarm time scale) leave a state set by hand alone; with ``notBreaching``
    it would put an ALARM back to OK at the next period's end, racing the tick that is meant to see it.
    """
    put_errors_alarm(cloudwatch, name, TreatMissingData="ignore")


def set_alarm(cloudwatch: Any, name: str, state: str) -> None:
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


def platform_queue(emulator: Emulator, name: str = "platform-alarms") -> str:
    """What a platform team makes for ``--alarm-events QUEUE_URL``: the queue, the rule, its target, the policy.

    Returns the queue's URL. Every alarm state change of the account reaches it (no alarm filter).
    """
    sqs, events = emulator.client("sqs"), emulator.client("events")
    url = str(sqs.create_queue(QueueName=name)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}
    rule = events.put_rule(Name=name, EventPattern=json.dumps(pattern))["RuleArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "q", "Arn": arn}])
    allow_the_rule = {
        "Effect": "Allow",
        "Principal": {"Service": "events.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": rule}},
    }
    policy = {"Version": "2012-10-17", "Statement": [allow_the_rule]}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    return url


@dataclass
class MemorySink:
    """Keeps the latest status, every event, report and alias write per rollout: tests read them back."""

    statuses: dict[str, Status] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    reports: dict[str, list[Reconciled]] = field(default_factory=dict)
    writes: dict[str, list[AliasWritten]] = field(default_factory=dict)

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        self.statuses[spec.key] = status

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        self.events.setdefault(spec.key, []).append(event)

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        self.reports.setdefault(spec.key, []).append(report)

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        self.writes.setdefault(spec.key, []).append(write)

    async def removed(self, *, spec: RolloutSpec) -> None:
        self.statuses.pop(spec.key, None)


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = start if start is not None else time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class EngineHarness:
    """An Engine over a GitOps directory, driven one tick at a time on its own event loop."""

    def __init__(
        self,
        emulator: Emulator,
        source: Path,
        *,
        clock: FakeClock | None = None,
        time_scale: float = 1.0,
        watch: tuple[str, str] | None = None,
        can_write: Callable[[], bool] = lambda: True,
        ownership: OwnershipPolicy | None = None,
        endpoint: str | None = None,
        max_attempts: int = 5,
        measure_wait: float = 1.0,
        sink: MemorySink | None = None,
    ) -> None:
        self.emulator = emulator
        # (function, alias) read after every tick, so every routing the alias went through is seen.
        self.watch = watch
        self.seen: list[tuple[str, dict[str, float]]] = []
        self.clock = clock or FakeClock()
        self.sink = sink if sink is not None else MemorySink()
        self.source = FileSource(source)
        # The budget's pacing is not under test here and would only make tests slow.
        budget = Budget(dict.fromkeys(DEFAULT_RATES, 10_000.0))
        aws = AwsSettings(endpoint_url=endpoint or emulator.url, region="us-east-1", max_attempts=max_attempts)
        self.aws = make_clients(aws, budget=budget)
        settings = EngineSettings(interval=5.0, time_scale=time_scale, ownership=ownership, measure_wait=measure_wait)
        self.engine = Engine(
            self.aws, settings=settings, clock=self.clock, sinks=(self.sink,), rand=lambda: 0.5, can_write=can_write
        )
        self._runner = asyncio.Runner()
        self.reload()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await awaitable

        return self._runner.run(wrapped())

    def reload(self) -> None:
        """Re-read the directory, as the file watcher does on a change."""
        self.run(self.engine.apply(self.source.scan()))

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.run(self.engine.tick())
        if self.watch is not None:
            self._record_alias(*self.watch)

    def step(self, seconds: float = 0.0) -> None:
        """One tick as the daemon makes it: waits for the reconciles it started, not for hooks or
        measurements still running (``tick`` waits for those too)."""
        self.clock.advance(seconds)

        async def stepped() -> None:
            started = await self.engine.step()
            if started:
                await asyncio.wait(started)

        self.run(stepped())

    def _record_alias(self, function: str, alias: str) -> None:
        try:
            routing = alias_routing(self.emulator, function, alias)
        except self.emulator.client("lambda").exceptions.ResourceNotFoundException:
            return
        if not self.seen or self.seen[-1] != routing:
            self.seen.append(routing)

    def status(self, name: str, namespace: str = "default") -> Status:
        status = self.engine.status(f"{namespace}/{name}")
        assert status is not None, f"no status for {namespace}/{name}"
        return status

    def drive(self, until: Callable[[], bool], *, step: float = 1.0, max_ticks: int = 200) -> int:
        """Tick (advancing the clock by ``step``) until ``until()``; returns the ticks it took."""
        for count in range(max_ticks):
            if until():
                return count
            self.tick(step)
        raise AssertionError(f"condition not reached after {max_ticks} ticks")

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def phase_is(harness: EngineHarness, name: str, *phases: Phase) -> Callable[[], bool]:
    def check() -> bool:
        status = harness.engine.status(f"default/{name}")
        return status is not None and status.phase in phases

    return check


def alias_routing(emulator: Emulator, function: str, alias: str) -> tuple[str, dict[str, float]]:
    response = emulator.client("lambda").get_alias(FunctionName=function, Name=alias)
    weights = response.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {}
    return response["FunctionVersion"], {k: float(v) for k, v in weights.items()}


def alias_writes(emulator: Emulator, function: str | None = None, alias: str | None = None) -> list[Any]:
    """CreateAlias / UpdateAlias calls the emulator accepted, in order, optionally for one alias."""
    writes = []
    for call in emulator.calls():
        if call.operation not in ("CreateAlias", "UpdateAlias") or call.status >= 300:
            continue
        params = call.params
        if function is not None and function not in str(params.get("FunctionName", "")):
            continue
        if alias is not None and params.get("Name") != alias:
            continue
        writes.append(call)
    return writes


def written_weights(emulator: Emulator, function: str, alias: str) -> list[tuple[str | None, float]]:
    """(additional version, weight) of each successful alias write; (None, 0.0) clears the weights."""
    result: list[tuple[str | None, float]] = []
    for call in alias_writes(emulator, function, alias):
        weights = (call.params.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        if weights:
            (version, weight), *_ = weights.items()
            result.append((version, float(weight)))
        else:
            result.append((None, 0.0))
    return result


def write_calls(emulator: Emulator) -> list[str]:
    return [c.operation for c in emulator.calls() if c.operation in WRITE_OPERATIONS]


def send_request(emulator: Emulator, function: str, alias: str, verb: Verb, request_id: str = "r1") -> None:
    """What the control verbs do: put a request tag on the function."""
    lam = emulator.client("lambda")
    arn = lam.get_function_configuration(FunctionName=function)["FunctionArn"]
    value = encode_request(Request(id=request_id, verb=verb, at=time.time(), by="arn:aws:iam::123456789012:user/t"))
    lam.tag_resource(Resource=arn, Tags={request_key(alias): value})


def function_tags(emulator: Emulator, function: str) -> dict[str, str]:
    lam = emulator.client("lambda")
    arn = lam.get_function_configuration(FunctionName=function)["FunctionArn"]
    return dict(lam.list_tags(Resource=arn)["Tags"])


def cli_env(emulator: Emulator | None) -> dict[str, str]:
    """Environment for ``python -m controller.cli ...`` subprocesses against the emulator.

    With ``None`` no endpoint is set (and an inherited one removed): the command is given
    ``--aws-endpoint-url`` itself.
    """
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        PYTHONUNBUFFERED="1",
    )
    if emulator is None:
        env.pop("AWS_ENDPOINT_URL", None)
    else:
        env["AWS_ENDPOINT_URL"] = emulator.url
    return env


CLI = [sys.executable, "-m", "controller.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (a readiness probe's view); False while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def daemon(
    args: list[str], *, env: dict[str, str], log: Path, out: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m controller.cli ARGS`` for the block, its stderr in ``log`` (and its stdout in ``out``,
    else discarded); killed (SIGKILL) if still running.

    The log is a file, not a pipe: a chatty daemon can never block on a full pipe nobody reads.
    """
    with log.open("wb") as stream, contextlib.ExitStack() as files:
        stdout = files.enter_context(out.open("wb")) if out is not None else subprocess.DEVNULL
        process = subprocess.Popen([*CLI, *args], env=env, stdout=stdout, stderr=stream)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def stop_with_sigterm(process: subprocess.Popen[bytes], *, within: float = 10.0) -> None:
    """SIGTERM must end the daemon with exit code 0 within ``within`` seconds."""
    stopping = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(within + 2) == 0
    assert time.monotonic() - stopping < within
