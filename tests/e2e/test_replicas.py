"""Several ``run`` processes on one directory: exactly one writes, whatever happens to the others.

Real subprocesses (``--interval 0.5``, ``--lease-duration 3``: renew deadline 2 s, a look every 0.4 s)
against the strict emulator, with rollouts mid-canary and ``driftPolicy: Revert`` (without the lease,
two controllers revert each other's writes forever). Each process signs with its own access key, so
the emulator's call log says who made every call; from it, and from the alias writes with their
times, each test checks: one writer at every instant (the sequence of Lambda writers never comes back
to an earlier one, and a new writer's first write comes after it took the lease), no step repeated or
skipped (the alias is written exactly once per step), no pause shortened. The figures measured
(takeover after a SIGKILL, handover after a SIGTERM, a partitioned leader's stop) are printed.
"""

from __future__ import annotations

import datetime
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

import pytest

from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from tests.integration.helpers import (
    WRITE_OPERATIONS,
    alias_routing,
    alias_writes,
    canary,
    cli_env,
    daemon,
    rollout_document,
    seed_alias,
    stop_with_sigterm,
    write_document,
    written_weights,
)

pytestmark = pytest.mark.e2e

PAUSE = 5.0
LEASE_DURATION = 3.0
RENEW_DEADLINE = LEASE_DURATION * 2 / 3
RETRY = LEASE_DURATION * 2 / 15
# After the holder dies, a standby takes over between D - R and D + 2R later (the module docstring of
# controller.sources.lease); the slack covers two round trips and two busy cores starting processes.
TAKEOVER_BOUND = LEASE_DURATION + 2 * RETRY
SLACK = 0.5
TABLE = "lambda-rollouts-leases"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)
    yield emu
    emu.stop()


@dataclass
class Replica:
    key: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()


class Replicas:
    """``run`` processes on one directory, each with its own access key; all SIGKILLed on exit."""

    def __init__(self, emulator: Emulator, source: Path, logs: Path) -> None:
        self.emulator, self.source, self.logs = emulator, source, logs
        self.started: list[Replica] = []
        self._stack = ExitStack()

    def start(self, key: str, *, endpoint: str | None = None) -> Replica:
        env = {**cli_env(self.emulator), "AWS_ACCESS_KEY_ID": key}
        if endpoint is not None:
            env["AWS_ENDPOINT_URL"] = endpoint
        args = ["run", "--source", str(self.source), "--interval", "0.5", "--log-format", "text"]
        args += ["--lease-duration", str(LEASE_DURATION)]
        log = self.logs / f"{key}.log"
        process = self._stack.enter_context(daemon(args, env=env, log=log))
        replica = Replica(key, process, log)
        self.started.append(replica)
        return replica

    def leader(self) -> Replica | None:
        """The replica the lease item names (by pid), None while nobody holds it."""
        item = lease_item(self.emulator)
        if item is None or not item["holder"]["S"]:
            return None
        pid = int(item["pid"]["N"])
        return next((r for r in self.started if r.process.pid == pid), None)

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def lease_item(emulator: Emulator) -> dict[str, Any] | None:
    try:
        response = emulator.client("dynamodb").get_item(
            TableName=TABLE, Key={"name": {"S": "default"}}, ConsistentRead=True
        )
    except emulator.client("dynamodb").exceptions.ResourceNotFoundException:
        return None
    item = response.get("Item")
    return dict(item) if item else None


def lambda_writes(emulator: Emulator) -> list[Any]:
    """Every Lambda write that reached AWS (accepted or not: an attempt is a write), in order."""
    return [c for c in emulator.calls() if c.service == "lambda" and c.operation in WRITE_OPERATIONS]


def acquisitions(emulator: Emulator) -> list[tuple[float, str]]:
    """(time, access key) of every successful acquisition of the lease (a conditional PutItem)."""
    return [
        (c.timestamp, c.access_key)
        for c in emulator.calls()
        if c.service == "dynamodb" and c.operation == "PutItem" and c.status == 200
    ]


def assert_one_writer_at_every_instant(emulator: Emulator) -> list[str]:
    """The Lambda writers in order of their writes; each appears in one unbroken run, after its lease."""
    writes = lambda_writes(emulator)
    runs = [key for key, _ in groupby(c.access_key for c in writes)]
    assert len(runs) == len(set(runs)), f"writers took turns: {runs}"
    taken = acquisitions(emulator)
    for key in runs:
        first_write = next(c.timestamp for c in writes if c.access_key == key)
        took = [at for at, who in taken if who == key and at <= first_write]
        assert took, f"{key} wrote before it held the lease"
    return runs


def assert_every_step_once_and_no_pause_shortened(emulator: Emulator, function: str) -> None:
    assert written_weights(emulator, function, "live") == [("2", 0.2), ("2", 0.5), (None, 0.0)]
    times = [c.timestamp for c in alias_writes(emulator, function, "live")]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert all(gap >= PAUSE for gap in gaps), gaps


def log_time(line: str) -> float:
    """Epoch seconds of a text log line (``2026-12-01 10:32:54,483 LEVEL ...``, local time)."""
    stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


def wait_for_log(replica: Replica, text: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in replica.log_text().splitlines():
            if text in line:
                return line
        assert replica.process.poll() is None, f"{replica.key} exited:\n{replica.log_text()}"
        time.sleep(0.05)
    raise AssertionError(f"{replica.key} never logged {text!r}:\n{replica.log_text()}")


def start_rollout(emulator: Emulator, source: Path, function: str) -> None:
    """``function`` 1 -> 2 by canary 20% / pause / 50% / pause / 100%, hand-made changes reverted."""
    seed_alias(emulator, function)
    document = rollout_document(function, function=function, version="2", strategy=canary(20, PAUSE, 50, PAUSE))
    document["spec"]["driftPolicy"] = "Revert"
    write_document(source, document)
    emulator.clear_calls()  # from here on, every call is a controller's


def until_routing(emulator: Emulator, function: str, routing: tuple[str, dict[str, float]], timeout: float) -> None:
    emulator.wait_for(lambda: alias_routing(emulator, function, "live") == routing, timeout=timeout)


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path) -> Iterator[tuple[Emulator, Path, Replicas]]:
    emulator.reset()
    source = tmp_path / "rollouts"
    source.mkdir()
    with Replicas(emulator, source, tmp_path) as replicas:
        yield emulator, source, replicas


def test_two_replicas_a_sigkilled_leader_is_replaced_within_the_bound(world: tuple[Emulator, Path, Replicas]) -> None:
    emulator, source, replicas = world
    start_rollout(emulator, source, "kill2")
    first = replicas.start("REPLICA-A")
    until_routing(emulator, "kill2", ("1", {"2": 0.2}), timeout=30)
    second = replicas.start("REPLICA-B")
    wait_for_log(second, "; waiting")
    assert replicas.leader() is first
    time.sleep(PAUSE / 3)  # mid-pause

    killed = time.time()
    first.process.send_signal(signal.SIGKILL)
    until_routing(emulator, "kill2", ("2", {}), timeout=30)

    assert assert_one_writer_at_every_instant(emulator) == ["REPLICA-A", "REPLICA-B"]
    assert_every_step_once_and_no_pause_shortened(emulator, "kill2")
    takeover = next(at for at, key in acquisitions(emulator) if key == "REPLICA-B") - killed
    print(f"\ntakeover after SIGKILL: {takeover:.2f}s (bound {TAKEOVER_BOUND:.1f}s)")
    assert LEASE_DURATION - RETRY - SLACK <= takeover <= TAKEOVER_BOUND + SLACK
    assert "did not renew it for" in wait_for_log(second, "acquired")
    stop_with_sigterm(second.process)


def test_three_replicas_sigkill_then_sigterm(world: tuple[Emulator, Path, Replicas]) -> None:
    emulator, source, replicas = world
    start_rollout(emulator, source, "kill3")
    started = [replicas.start(key) for key in ("REPLICA-A", "REPLICA-B", "REPLICA-C")]
    until_routing(emulator, "kill3", ("1", {"2": 0.2}), timeout=30)
    first = replicas.leader()
    assert first is not None
    time.sleep(PAUSE / 3)
    killed = time.time()
    first.process.send_signal(signal.SIGKILL)
    emulator.wait_for(lambda: replicas.leader() not in (None, first), timeout=TAKEOVER_BOUND + 5)
    second = replicas.leader()
    assert second is not None
    takeover = next(at for at, key in acquisitions(emulator) if key == second.key) - killed

    until_routing(emulator, "kill3", ("1", {"2": 0.5}), timeout=30)
    time.sleep(PAUSE / 3)
    terminated = time.time()
    stop_with_sigterm(second.process)  # exits 0 within 10 s, after releasing the lease
    third = next(r for r in started if r not in (first, second))
    handover = emulator.wait_for(lambda: next((at for at, key in acquisitions(emulator) if key == third.key), None))
    handover -= terminated
    until_routing(emulator, "kill3", ("2", {}), timeout=30)

    assert assert_one_writer_at_every_instant(emulator) == [first.key, second.key, third.key]
    assert_every_step_once_and_no_pause_shortened(emulator, "kill3")
    print(f"\ntakeover after SIGKILL: {takeover:.2f}s; handover after SIGTERM: {handover:.2f}s")
    assert takeover <= TAKEOVER_BOUND + SLACK
    assert handover <= RETRY + SLACK, "a clean stop hands the lease over at the standby's next look"
    assert "released" in second.log_text()
    stop_with_sigterm(third.process)


def test_a_leader_cut_off_from_dynamodb_stops_before_the_standby_writes(
    world: tuple[Emulator, Path, Replicas],
) -> None:
    emulator, source, replicas = world
    proxy = FaultProxy.start(upstream=emulator.url)
    try:
        start_rollout(emulator, source, "cut")
        first = replicas.start("REPLICA-A", endpoint=proxy.url)  # all its calls go through the proxy
        until_routing(emulator, "cut", ("1", {"2": 0.2}), timeout=30)
        second = replicas.start("REPLICA-B")
        wait_for_log(second, "; waiting")
        time.sleep(PAUSE / 3)

        # Every DynamoDB call of the leader now hangs; its Lambda calls still go through.
        proxy.set_rules([FaultRule(action="latency", service="dynamodb", latency=30.0)])
        cut = time.time()
        until_routing(emulator, "cut", ("2", {}), timeout=40)
        stopped = log_time(wait_for_log(first, "stopped writing: the lease was not renewed within its renew deadline"))
        proxy.set_rules([])
        time.sleep(2 * RETRY)  # healed: the old leader sees the new one and stays a standby
        assert first.process.poll() is None
        wait_for_log(first, "; waiting")
    finally:
        proxy.stop()

    assert assert_one_writer_at_every_instant(emulator) == ["REPLICA-A", "REPLICA-B"]
    assert_every_step_once_and_no_pause_shortened(emulator, "cut")
    taken = next(at for at, key in acquisitions(emulator) if key == "REPLICA-B")
    last_write = max(c.timestamp for c in lambda_writes(emulator) if c.access_key == "REPLICA-A")
    print(f"\ncut off: stopped writing after {stopped - cut:.2f}s, the standby took over after {taken - cut:.2f}s")
    assert stopped - cut <= RENEW_DEADLINE + SLACK
    assert last_write < stopped < taken, "the cut-off leader wrote after the standby took over"
    stop_with_sigterm(first.process)
    stop_with_sigterm(second.process)


def test_two_started_by_mistake_never_fight(world: tuple[Emulator, Path, Replicas]) -> None:
    emulator, source, replicas = world
    start_rollout(emulator, source, "mistake")
    both = [replicas.start("REPLICA-A"), replicas.start("REPLICA-B")]  # at the same moment
    until_routing(emulator, "mistake", ("2", {}), timeout=40)
    wait_for_log(replicas.leader() or both[0], "promoted")  # the record says Healthy: the rollout is over
    settled = len(lambda_writes(emulator))
    time.sleep(6 * 0.5)  # a few more ticks of both: nothing more is written

    assert len(lambda_writes(emulator)) == settled
    assert len(assert_one_writer_at_every_instant(emulator)) == 1
    assert_every_step_once_and_no_pause_shortened(emulator, "mistake")
    leader = replicas.leader()
    waiting = [r for r in both if r is not leader]
    assert len(waiting) == 1
    assert waiting[0].log_text().count("; waiting") == 1
    for replica in both:
        assert "drift" not in replica.log_text().lower()
        stop_with_sigterm(replica.process)
