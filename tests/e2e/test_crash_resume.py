"""Crash safety of the real daemon: ``run`` killed with SIGKILL mid-pause, then started again.

The durable record on the function is the only memory the controller has, so a second process
must resume on the same step, keep the whole pause (measured on the emulator's clock, from the
alias write timestamps in its call log), never move a weight backwards, and SIGTERM must end it
cleanly; a sequential test must go on with the evidence it had, never start again from zero nor
fold a period twice. Real subprocesses, real (short) intervals and one-second periods.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.core.codec import decode_record
from controller.core.sequential import SequentialState
from controller.emulator import Emulator
from tests.integration.helpers import (
    alias_routing,
    alias_writes,
    canary,
    cli_env,
    daemon,
    function_tags,
    rollout_document,
    seed_alias,
    stop_with_sigterm,
    write_document,
)

pytestmark = pytest.mark.e2e

PAUSE = 3.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)
    yield emu
    emu.stop()


def run_daemon(emulator: Emulator, source: Path, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    args = ["run", "--source", str(source), "--interval", "0.2", "--log-format", "text"]
    return daemon(args, env=cli_env(emulator), log=log)


class AliasWatcher:
    """Polls the alias and keeps every distinct routing seen, in order."""

    def __init__(self, emulator: Emulator, function: str, alias: str) -> None:
        self.emulator, self.function, self.alias = emulator, function, alias
        self.seen: list[tuple[str, dict[str, float]]] = []

    def until(self, routing: tuple[str, dict[str, float]], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = alias_routing(self.emulator, self.function, self.alias)
            if not self.seen or self.seen[-1] != current:
                self.seen.append(current)
            if current == routing:
                return
            time.sleep(0.05)
        raise AssertionError(f"alias never reached {routing}; seen {self.seen}")


def test_sigkill_mid_pause_resumes_on_the_same_step(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset()
    seed_alias(emulator, "resume")
    (tmp_path / "rollouts").mkdir()
    write_document(
        tmp_path / "rollouts",
        rollout_document("resume", function="resume", version="2", strategy=canary(20, PAUSE, 50, PAUSE)),
    )
    emulator.clear_calls()
    watcher = AliasWatcher(emulator, "resume", "live")

    source = tmp_path / "rollouts"
    with run_daemon(emulator, source, tmp_path / "first.log"):
        watcher.until(("1", {"2": 0.2}))
        time.sleep(PAUSE / 3)  # well inside the pause; leaving the block SIGKILLs the daemon

    with run_daemon(emulator, source, tmp_path / "second.log") as second:
        watcher.until(("2", {}))
        stop_with_sigterm(second)

    writes = alias_writes(emulator, "resume", "live")
    # 20% once (not re-applied after the restart), then 50%, then 100%: no step skipped or repeated.
    assert len(writes) == 3, [(w.operation, w.timestamp) for w in writes]
    assert writes[1].timestamp - writes[0].timestamp >= PAUSE
    assert writes[2].timestamp - writes[1].timestamp >= PAUSE
    weights = [routing[1].get("2", 1.0 if routing[0] == "2" else 0.0) for routing in watcher.seen]
    assert weights == sorted(weights), watcher.seen


class Instrumentation:
    """The function's own metrics, as its code would put them: each second's checkouts per version."""

    def __init__(self, emulator: Emulator, counts: dict[str, tuple[int, int]]) -> None:
        self.cloudwatch = emulator.client("cloudwatch")
        self.counts = counts
        self.done: set[int] = set()

    def put(self) -> None:
        """This second's counts, once (stamped inside it: its period is whole when it ends)."""
        second = math.floor(time.time())
        if second in self.done:
            return
        self.done.add(second)
        stamp = datetime.fromtimestamp(second + 0.5, UTC)
        data = []
        for version, (attempted, failed) in self.counts.items():
            dims = [{"Name": "Version", "Value": version}]
            for name, value in (("Attempted", attempted), ("Failed", failed)):
                data.append(
                    {"MetricName": name, "Dimensions": dims, "Timestamp": stamp, "Value": value, "StorageResolution": 1}
                )
        self.cloudwatch.put_metric_data(Namespace="Test/Resume", MetricData=data)


def sequential_state(emulator: Emulator) -> SequentialState | None:
    record = decode_record("live", function_tags(emulator, "judged"))
    runs = record.sequential if record is not None else ()
    return runs[0].state if runs else None


def until(check: Callable[[], bool], put: Callable[[], None], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        put()
        time.sleep(0.05)


def test_sigkill_mid_test_resumes_with_its_evidence(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset()
    seed_alias(emulator, "judged")
    source = tmp_path / "rollouts"
    source.mkdir()
    document = rollout_document("judged", function="judged", version="2", strategy=canary(10, None))
    test = {
        "name": "failures",
        "failures": {"namespace": "Test/Resume", "metricName": "Failed"},
        "total": {"namespace": "Test/Resume", "metricName": "Attempted"},
        "versionDimension": "Version",
        "period": "1s",
        "publicationDelay": "0s",
    }
    document["spec"]["analysis"] = {"sequential": [test]}
    write_document(source, document)
    # As bad as stable, and few requests: evidence builds slowly, nothing is concluded in this test.
    metrics = Instrumentation(emulator, {"1": (90, 1), "2": (10, 0)})
    with run_daemon(emulator, source, tmp_path / "first.log"):
        until(lambda: alias_routing(emulator, "judged", "live") == ("1", {"2": 0.1}), metrics.put, "10%")
        until(lambda: (sequential_state(emulator) or SequentialState("")).looks >= 3, metrics.put, "three looks")
        before = sequential_state(emulator)  # leaving the block SIGKILLs the daemon
    assert before is not None and before.through is not None

    with run_daemon(emulator, source, tmp_path / "second.log") as second:
        until(lambda: (sequential_state(emulator) or before).looks > before.looks + 2, metrics.put, "more looks")
        stop_with_sigterm(second)
    after = sequential_state(emulator)
    assert after is not None
    # The same test, carried on: every second from where it stopped is one more look, none twice ...
    assert after.through is not None and after.looks - before.looks == after.through - before.through > 2
    # ... and the evidence it had is still in it: the counts grew by at most one period per new look.
    assert 0 <= after.canary_requests - before.canary_requests <= 10 * (after.looks - before.looks)
    assert 0 <= after.stable_requests - before.stable_requests <= 90 * (after.looks - before.looks)
    assert before.stable_requests >= 90
    # The e-values' compensators went on from where they were (each only grows away from zero).
    assert all(abs(a) >= abs(b) > 0 for a, b in zip(after.compensators, before.compensators, strict=True))
    assert alias_routing(emulator, "judged", "live") == ("1", {"2": 0.1})  # no conclusion, still waiting
