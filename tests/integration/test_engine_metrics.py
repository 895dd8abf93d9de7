"""Metric analysis per version, end to end: the engine, the strict emulator and simulated traffic.

The demo's ``TrafficSimulator`` invokes the alias as clients do (through the emulator's traffic
endpoint, many invocations a beat): the emulator routes each request by the alias's live weights,
answers as each version's profile says, and makes Lambda's own ``Invocations`` / ``Errors`` /
``Duration`` metrics, per version (``ExecutedVersion``) and for the alias. The test drives beats
itself, between ticks, with invocation times on the engine's fake clock, so every measurement window
holds exactly the traffic of its period.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.core.codec import decode_record
from controller.core.types import Phase, Record, Verb
from controller.demo.traffic import TrafficSimulator, VersionProfile
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    FakeClock,
    alias_routing,
    canary,
    function_tags,
    put_errors_alarm,
    rollout_document,
    seed_alias,
    send_request,
    write_document,
)

GOOD, BAD = VersionProfile(error_rate=0.0), VersionProfile(error_rate=0.5)


def error_rate(**extra: Any) -> dict[str, Any]:
    """Percent of the canary's invocations that failed, measured every second over one-second periods."""
    return {
        "name": "error-rate",
        "queries": [
            {"id": "errors", "metricName": "Errors", "stat": "Sum"},
            {"id": "invocations", "metricName": "Invocations", "stat": "Sum"},
        ],
        "expression": "errors/invocations*100",
        "threshold": {"max": 5},
        "period": "1s",
        "interval": "1s",
        **extra,
    }


@pytest.fixture
def harness(aws: Emulator, docs: Path) -> Iterator[EngineHarness]:
    # Whole seconds, so that one-second periods line up with the ticks.
    with EngineHarness(aws, docs, clock=FakeClock(float(int(time.time())))) as h:
        yield h


def deploy(
    aws: Emulator, docs: Path, h: EngineHarness, name: str, *, metrics: list[dict[str, Any]], **spec: Any
) -> None:
    seed_alias(aws, name)
    document = rollout_document(name, function=name, version="2", strategy=spec.pop("strategy", canary(10, 2, 50, 2)))
    document["spec"]["analysis"] = {"metrics": metrics, **spec.pop("analysis", {})}
    document["spec"].update(spec)
    write_document(docs, document)
    h.reload()


def traffic(
    aws: Emulator, name: str, *, old: VersionProfile, new: VersionProfile, requests: int = 200
) -> TrafficSimulator:
    simulator = TrafficSimulator(
        endpoint=aws.url,
        function=name,
        alias="live",
        profiles={"1": old, "2": new},
        requests_per_beat=requests,
        seed=7,
    )
    simulator.apply_profiles()
    return simulator


def run(h: EngineHarness, sims: list[TrafficSimulator], *, ticks: int) -> None:
    """Traffic half a second after each tick (inside the period that started at it), then the next tick."""
    for _ in range(ticks):
        for sim in sims:
            sim.beat(now=datetime.fromtimestamp(h.clock.now + 0.5, UTC))
        h.tick(1)


def record(aws: Emulator, name: str) -> Record:
    found = decode_record("live", function_tags(aws, name))
    assert found is not None
    return found


def alias_alarm(aws: Emulator, name: str) -> str:
    """An alarm on the alias's errors (no ExecutedVersion), firing before the rollout starts.

    It stands for an alarm the old version's errors keep in ALARM: the test's traffic runs on the
    engine's fake clock, ahead of the wall clock the emulator evaluates alarms on, so the alarm counts
    missing data as breaching, which keeps it firing through every period it is evaluated.
    """
    alarm = f"{name}-alias-errors"
    dims = [{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:live"}]
    put_errors_alarm(aws.client("cloudwatch"), alarm, Dimensions=dims, TreatMissingData="breaching")
    aws.wait_for(lambda: alarm_state(aws, alarm) == "ALARM", timeout=5)
    return alarm


def alarm_state(aws: Emulator, alarm: str) -> str:
    (found,) = aws.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"]
    return str(found["StateValue"])


def test_fix_passes_on_its_own_metrics_while_the_old_versions_alias_alarm_fires(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    alarm = alias_alarm(aws, "pay")
    deploy(aws, docs, harness, "pay", metrics=[error_rate()])
    sim = traffic(aws, "pay", old=VersionProfile(error_rate=0.3), new=GOOD)
    run(harness, [sim], ticks=12)
    assert alias_routing(aws, "pay", "live") == ("2", {})
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.HEALTHY, "Promoted")
    assert alarm_state(aws, alarm) == "ALARM"  # still firing: the old version's errors are in its window
    # Each weight was held until the canary's own error rate had been measured at it.
    assert [c.operation for c in aws.calls()].count("GetMetricData") >= 2


def test_a_bad_canary_fails_its_error_rate_and_is_rolled_back(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness, "pay", metrics=[error_rate()])
    sim = traffic(aws, "pay", old=GOOD, new=BAD)
    run(harness, [sim], ticks=4)
    assert alias_routing(aws, "pay", "live") == ("1", {})
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.ROLLED_BACK, "AnalysisFailed")
    saved = record(aws, "pay")
    assert "analysis failed: metric error-rate = " in saved.message and "is above max 5" in saved.message
    assert [(f.version, f.reason) for f in saved.failed] == [("2", "AnalysisFailed")]
    assert (saved.history[-1].outcome, saved.history[-1].reason) == ("RolledBack", "AnalysisFailed")
    assert any(e.reason == "AnalysisFailed" for e in harness.sink.events["default/pay"])
    run(harness, [sim], ticks=3)
    assert alias_routing(aws, "pay", "live") == ("1", {})  # never retried by itself


def test_a_canary_without_data_goes_inconclusive_and_is_never_promoted(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    deploy(aws, docs, harness, "pay", metrics=[error_rate(inconclusiveLimit=2)], strategy=canary(1, 2))
    # Nobody calls the function: the canary's error rate has no data (routing draws per request, so
    # any traffic at all could reach a 1% canary now and then).
    sim = traffic(aws, "pay", old=GOOD, new=GOOD, requests=0)
    run(harness, [sim], ticks=4)
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.PAUSED, "AnalysisInconclusive")
    assert "error-rate" in status.message
    run(harness, [sim], ticks=8)
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.01})  # long past its 2 s pause: held
    assert harness.status("pay").reason == "AnalysisInconclusive"
    send_request(aws, "pay", "live", Verb.PROMOTE)  # a person accepts the missing data
    run(harness, [sim], ticks=2)
    assert alias_routing(aws, "pay", "live") == ("2", {})


def test_measurements_due_in_one_tick_cost_one_get_metric_data(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    names = ["pay", "cart", "ship"]
    for name in names:
        deploy(aws, docs, harness, name, metrics=[error_rate()], strategy=canary(10, 60))
    sims = [traffic(aws, name, old=GOOD, new=GOOD) for name in names]
    run(harness, sims, ticks=1)  # every rollout at 10% from the same instant: all due at the next tick
    assert all(alias_routing(aws, name, "live") == ("1", {"2": 0.1}) for name in names)
    aws.clear_calls()
    run(harness, sims, ticks=1)
    assert [c.operation for c in aws.calls()].count("GetMetricData") == 1
    for name in names:
        (state,) = record(aws, name).metrics
        assert (state.name, state.outcome, state.value, state.at) == (
            "error-rate",
            "Successful",
            0.0,
            harness.clock.now,
        )


def test_emergency_bypass_deploys_past_a_firing_watched_alarm(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    alarm = alias_alarm(aws, "pay")
    deploy(aws, docs, harness, "pay", metrics=[error_rate()], analysis={"alarms": [alarm]})
    run(harness, [], ticks=1)
    assert harness.status("pay").reason == "AlarmFired" and alias_routing(aws, "pay", "live") == ("1", {})
    send_request(aws, "pay", "live", Verb.PROMOTE_FULL)
    run(harness, [], ticks=2)
    assert alias_routing(aws, "pay", "live") == ("1", {})  # promote --full alone respects the alarm
    send_request(aws, "pay", "live", Verb.PROMOTE_BYPASS, request_id="r2")
    run(harness, [], ticks=2)
    assert alias_routing(aws, "pay", "live") == ("2", {})
    assert harness.status("pay").phase is Phase.HEALTHY
    entry = record(aws, "pay").history[-1]
    assert (entry.version, entry.outcome, entry.reason) == ("2", "Promoted", "EmergencyBypass") and entry.by
    assert any(e.reason == "EmergencyBypass" for e in harness.sink.events["default/pay"])
