"""Sequential analysis end to end: the engine, the strict emulator and custom high-resolution metrics.

The test plays the function's own instrumentation: every second it puts, per version (the
``Version`` dimension the document names as ``versionDimension``), how many checkouts were attempted
and how many failed, with ``StorageResolution: 1`` into its own namespace, stamped on the engine's fake
clock. The engine reads them in its batched ``GetMetricData``, one-second period after period, and
the rollout is judged on them: a canary failing 20 times as often as stable is rolled back before its
pause ends, one failing as often as stable is not, and with ``promoteEarly`` finishes early.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.core.codec import decode_record
from controller.core.reasons import Reason
from controller.core.types import Phase, Record
from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    EngineHarness,
    FakeClock,
    alias_routing,
    canary,
    cli_env,
    function_tags,
    rollout_document,
    seed_alias,
    write_document,
)

NAMESPACE = "Shop/Checkout"
PAUSE = 600  # seconds: far longer than any of these tests runs on the fake clock


def checkout_test(**extra: Any) -> dict[str, Any]:
    """Failed over attempted checkouts, per version, on one-second periods published at once."""
    return {
        "name": "checkout",
        "failures": {"namespace": NAMESPACE, "metricName": "CheckoutFailed"},
        "total": {"namespace": NAMESPACE, "metricName": "CheckoutAttempted"},
        "versionDimension": "Version",
        "dimensions": {"Service": "pay"},
        "period": "1s",
        "publicationDelay": "0s",
        **extra,
    }


@pytest.fixture
def harness(aws: Emulator, docs: Path) -> Iterator[EngineHarness]:
    # Whole seconds, so that one-second periods line up with the ticks.
    with EngineHarness(aws, docs, clock=FakeClock(float(int(time.time())))) as h:
        yield h


def deploy(aws: Emulator, docs: Path, h: EngineHarness, *, early: bool = False) -> None:
    seed_alias(aws, "pay")
    document = rollout_document("pay", function="pay", version="2", strategy=canary(10, PAUSE))
    document["spec"]["analysis"] = {"sequential": [checkout_test()], "promoteEarly": early}
    write_document(docs, document)
    h.reload()


def put_counts(aws: Emulator, at: float, counts: dict[str, tuple[int, int]]) -> None:
    """Per version: (attempted, failed) checkouts in the second that begins at ``at``."""
    data = []
    for version, (attempted, failed) in counts.items():
        dims = [{"Name": "Service", "Value": "pay"}, {"Name": "Version", "Value": version}]
        stamp = datetime.fromtimestamp(at + 0.5, UTC)
        for name, value in (("CheckoutAttempted", attempted), ("CheckoutFailed", failed)):
            data.append(
                {"MetricName": name, "Dimensions": dims, "Timestamp": stamp, "Value": value, "StorageResolution": 1}
            )
    aws.client("cloudwatch").put_metric_data(Namespace=NAMESPACE, MetricData=data)


def run(aws: Emulator, h: EngineHarness, counts: dict[str, tuple[int, int]], *, ticks: int) -> None:
    """Each second's counts, then the tick that ends that second (the period is due at once)."""
    for _ in range(ticks):
        put_counts(aws, h.clock.now, counts)
        h.tick(1)


def record(aws: Emulator) -> Record:
    found = decode_record("live", function_tags(aws, "pay"))
    assert found is not None
    return found


def get_json(aws: Emulator) -> dict[str, Any]:
    done = subprocess.run(
        [*CLI, "get", "pay", "-o", "json"], env=cli_env(aws), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    return dict(row)


def test_a_canary_failing_twenty_times_as_often_is_rolled_back_before_its_pause_ends(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness)
    harness.tick()
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.1})
    started = harness.clock.now
    run(aws, harness, {"1": (900, 9), "2": (100, 20)}, ticks=5)
    assert alias_routing(aws, "pay", "live") == ("1", {})
    assert harness.clock.now - started < PAUSE
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.ROLLED_BACK, Reason.REGRESSION_DETECTED)
    saved = record(aws)
    assert saved.message.startswith("regression detected by sequential test checkout: canary 20.0% (20/100)")
    assert "vs stable 1.0% (9/900): regression beyond +20% proven (e-value " in saved.message
    assert [(f.version, f.reason) for f in saved.failed] == [("2", "RegressionDetected")]
    assert any(e.reason == "RegressionDetected" and e.warning for e in harness.sink.events["default/pay"])
    # What an operator sees, from the record on the function, with no controller running.
    shown = get_json(aws)
    assert (shown["phase"], shown["reason"], shown["stable"]) == ("RolledBack", "RegressionDetected", "1")
    assert "canary 20.0% (20/100) vs stable 1.0% (9/900)" in shown["message"] and ">= 100" in shown["message"]
    assert shown["evidence"] == []  # the attempt is over: the message keeps the counts and the bound


def test_a_canary_as_good_as_stable_stays_and_with_promote_early_finishes_before_its_pause(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness, early=True)
    harness.tick()
    started = harness.clock.now
    counts = {"1": (45_000, 450), "2": (5_000, 50)}  # "no regression" proven after 8 looks
    run(aws, harness, counts, ticks=2)
    # Evidence builds up, shown while the pause runs; nothing is concluded from a look or two.
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.PROGRESSING, Reason.BAKING)
    (evidence,) = status.evidence
    assert (evidence.test, evidence.canary_requests, evidence.stable_failures) == ("checkout", 10_000, 900)
    assert "; sequential checkout: canary 1.0% (100/10000) vs stable 1.0% (900/90000), e-values 10^" in (status.message)
    shown = get_json(aws)["evidence"]
    assert [(e["test"], e["canary"], e["conclusion"]) for e in shown] == [
        ("checkout", {"failures": 100, "requests": 10_000}, "Continue")
    ]
    for _ in range(30):
        if alias_routing(aws, "pay", "live") == ("2", {}):
            break
        run(aws, harness, counts, ticks=1)
    assert alias_routing(aws, "pay", "live") == ("2", {})
    harness.tick(1)
    assert harness.clock.now - started < 60 < PAUSE
    assert (harness.status("pay").phase, record(aws).history[-1].outcome) == (Phase.HEALTHY, "Promoted")
    events = [e for e in harness.sink.events["default/pay"] if e.reason == "PromotedEarly"]
    assert len(events) == 1 and "no regression beyond +20% proven" in events[0].message


def test_without_promote_early_an_equal_canary_bakes_its_whole_pause(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness)
    harness.tick()
    run(aws, harness, {"1": (180_000, 1_800), "2": (20_000, 200)}, ticks=30)
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.1})
    (evidence,) = harness.status("pay").evidence
    assert evidence.conclusion == "NoRegression" and evidence.looks == 30  # proven, and not acted on
    assert harness.status("pay").reason == Reason.BAKING


def test_the_counts_of_every_rollout_are_read_in_the_one_get_metric_data_of_the_tick(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness)
    harness.tick()
    put_counts(aws, harness.clock.now, {"1": (900, 9), "2": (100, 1)})
    aws.clear_calls()
    harness.tick(1)
    calls = [c for c in aws.calls() if c.operation == "GetMetricData"]
    assert len(calls) == 1
    (state,) = [run.state for run in record(aws).sequential]
    assert (state.looks, state.canary_requests, state.canary_failures, state.stable_requests) == (1, 100, 1, 900)
    aws.clear_calls()
    harness.tick()  # the same instant: no period is due, nothing is read
    assert [c for c in aws.calls() if c.operation == "GetMetricData"] == []


def test_plan_says_what_the_next_look_may_do(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    deploy(aws, docs, harness, early=True)
    harness.tick()
    done = subprocess.run(
        [*CLI, "plan", str(docs), "--log-format", "text"], env=cli_env(aws), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "  sequential checkout: canary - (0/0) vs stable - (0/0): no conclusion yet" in done.stdout
    assert "; next look " in done.stdout and "a proven regression rolls back at once" in done.stdout
    assert "a timed pause ends early (promoteEarly)" in done.stdout
