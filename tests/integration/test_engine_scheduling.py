"""Scheduling: a rollout whose AWS writes are throttled holds up no other rollout, and stops stay bounded.

The fault proxy throttles (and slows) ``UpdateAlias`` on one function only, so its reconcile sits in
botocore's adaptive retries for many seconds, as it would against a busy account. Meanwhile another
rollout must keep advancing on its own schedule, and stopping must not wait for the stuck write:
in-process (``Engine.run`` with a short grace) and as the ``run`` daemon, whose SIGTERM must end it
with 0 within 10 s.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource
from tests.integration.helpers import (
    alias_routing,
    alias_writes,
    canary,
    cli_env,
    daemon,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    stop_with_sigterm,
    write_document,
)


@pytest.fixture
def proxy(aws: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy.start(upstream=aws.url, seed=1) as running:
        yield running


def stuck_writes(function: str, *, latency: float) -> list[FaultRule]:
    """Every ``UpdateAlias`` on ``function`` answers throttled after ``latency`` s: each retry waits too."""
    return [
        FaultRule(action="latency", service="lambda", operation="UpdateAlias", function=function, latency=latency),
        FaultRule(action="throttle", service="lambda", operation="UpdateAlias", function=function),
    ]


def seed(aws: Emulator, source: Path, name: str, strategy: dict[str, object]) -> None:
    seed_alias(aws, name)
    write_document(source, rollout_document(name, function=name, version="2", strategy=strategy))


def test_a_throttled_rollout_does_not_hold_up_the_others(aws: Emulator, proxy: FaultProxy, tmp_path: Path) -> None:
    seed(aws, tmp_path, "stuck", canary(20, None))
    seed(aws, tmp_path, "brisk", canary(20, 0.3, 60, 0.3))
    # Five attempts of at least 2 s each: the stuck reconcile lasts far longer than brisk's whole plan.
    proxy.set_rules(stuck_writes("stuck", latency=2.0))
    budget = Budget(dict.fromkeys(DEFAULT_RATES, 10_000.0))
    clients = make_clients(AwsSettings(endpoint_url=proxy.url, region="us-east-1"), budget=budget)
    engine = Engine(clients, settings=EngineSettings(interval=0.1, shutdown_grace=0.3))
    timeline: dict[str, float] = {}

    async def scenario() -> None:
        await engine.apply(FileSource(tmp_path).scan())
        stop = asyncio.Event()
        runner = asyncio.create_task(engine.run(stop=stop))
        started = time.monotonic()
        while alias_routing(aws, "brisk", "live") != ("2", {}):
            assert time.monotonic() - started < 6.0, f"brisk stalled at {alias_routing(aws, 'brisk', 'live')}"
            await asyncio.sleep(0.05)
        timeline["brisk done"] = time.monotonic() - started
        # Brisk finished while stuck's first write was still being retried: nothing waited for it.
        assert "default/stuck" in engine.in_flight()
        stop.set()
        await runner
        timeline["stopped"] = time.monotonic() - started
        assert not engine.in_flight()

    asyncio.run(scenario())

    # Brisk's writes, each after its 0.3 s pause and a tick or two: on schedule.
    brisk = [call.timestamp for call in alias_writes(aws, "brisk", "live")]
    assert len(brisk) >= 3
    # (About 0.45 s apart on an idle machine; stalled for 10 s or more behind stuck's write without the fix.)
    assert all(later - earlier < 2.0 for earlier, later in itertools.pairwise(brisk)), brisk
    assert alias_routing(aws, "stuck", "live") == ("1", {})
    faults = proxy.fault_counts()
    assert faults.get("lambda:UpdateAlias:throttle", 0) >= 1
    # The stop waited its short grace, then cancelled the stuck reconcile instead of waiting it out.
    assert timeline["stopped"] - timeline["brisk done"] < 2.0, timeline


def test_sigterm_exits_0_within_10s_while_a_write_is_throttled(
    aws: Emulator, proxy: FaultProxy, docs: Path, tmp_path: Path
) -> None:
    seed(aws, docs, "stuck", canary(20, None))
    # Each attempt takes 3 s: the write's retries would last about 15 s, longer than the promise.
    proxy.set_rules(stuck_writes("stuck", latency=3.0))
    args = ["run", "--source", str(docs), "--interval", "0.1", "--log-format", "json"]
    env = cli_env(aws) | {"AWS_ENDPOINT_URL": proxy.url}
    log = tmp_path / "run.log"
    with daemon(args, env=env, log=log) as process:
        aws.wait_for(lambda: proxy.counts().get("lambda:UpdateAlias", 0) >= 1, timeout=20)
        stop_with_sigterm(process)
    assert "cancelling 1 reconcile(s) still in flight" in log.read_text()
    assert alias_routing(aws, "stuck", "live") == ("1", {})


class WatchedBudget(Budget):
    """A budget that notes, for each priority (rollback) Lambda call, the routine callers it found waiting
    and how many routine calls were served while it waited.

    What priority promises is that second number: zero, however slow the machine. How many routine
    calls a whole tick lets through also depends on how long its work between calls takes.
    """

    def __init__(self, rates: dict[str, float]) -> None:
        super().__init__(rates)
        self.routine_served = 0
        self.priority_calls: list[tuple[int, int]] = []  # (routine waiting when asked, routine served meanwhile)

    async def acquire(self, family: str, *, priority: bool = False) -> float:
        waiting, served = self.queued(family), self.routine_served
        waited = await super().acquire(family, priority=priority)
        if family == "lambda":
            if priority:
                self.priority_calls.append((waiting, self.routine_served - served))
            else:
                self.routine_served += 1
        return waited


def test_a_rollback_goes_ahead_of_queued_routine_calls_for_every_call_it_makes(aws: Emulator, tmp_path: Path) -> None:
    """Alias read, write-ahead record, alias write and confirmed record: all served before the queue."""
    seed_alias(aws, "pay")
    aws.seed_function("busy", versions=1)
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    document = rollout_document("pay", function="pay", version="2", strategy=canary(20, None), alarms=["pay-errors"])
    write_document(tmp_path, document)
    # Lambda paced at 20 calls/s: forty routine calls queue for two seconds.
    budget = WatchedBudget({**dict.fromkeys(DEFAULT_RATES, 10_000.0), "lambda": 20.0})
    clients = make_clients(AwsSettings(endpoint_url=aws.url, region="us-east-1"), budget=budget)
    engine = Engine(clients, settings=EngineSettings(interval=5.0))

    async def scenario() -> int:
        await engine.apply(FileSource(tmp_path).scan())
        while alias_routing(aws, "pay", "live") != ("1", {"2": 0.2}):
            await engine.tick()
        # By hand, on an alarm without data: the emulator's own evaluation leaves it in ALARM.
        aws.client("cloudwatch").set_alarm_state(AlarmName="pay-errors", StateValue="ALARM", StateReason="test")
        routine = [asyncio.create_task(clients.lambda_.get_alias("busy", "none")) for _ in range(40)]
        while budget.queued("lambda") < 20:
            await asyncio.sleep(0.01)
        queued = budget.queued("lambda")
        budget.priority_calls.clear()
        await engine.tick()
        await asyncio.gather(*routine)
        return queued

    queued = asyncio.run(scenario())

    assert alias_routing(aws, "pay", "live") == ("1", {})
    writes = [c.operation for c in aws.calls() if c.operation in ("TagResource", "UpdateAlias")]
    assert writes[-3:] == ["TagResource", "UpdateAlias", "TagResource"]  # written ahead, written, confirmed
    # Each of its calls (at 20/s) overtook the queue: it found routine calls waiting (at least 20 when
    # the tick began), yet not one of them was served while it waited.
    assert queued >= 20
    assert len(budget.priority_calls) >= 4, budget.priority_calls
    assert all(waiting > 0 and overtaken == 0 for waiting, overtaken in budget.priority_calls), budget.priority_calls
