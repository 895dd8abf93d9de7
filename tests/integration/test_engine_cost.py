"""Per-tick AWS cost must not grow with idle rollouts: 50 paused rollouts, one quiet tick."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from controller.core.types import Phase
from controller.emulator import Emulator
from tests.integration.helpers import EngineHarness, canary, phase_is, rollout_document, write_document

ROLLOUTS = 50


def test_quiet_tick_with_50_paused_rollouts(aws: Emulator, tmp_path: Path) -> None:
    lam = aws.client("lambda")
    cw = aws.client("cloudwatch")
    for index in range(ROLLOUTS):
        name = f"idle-{index:02d}"
        aws.seed_function(name, versions=2)
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        cw.put_metric_alarm(
            AlarmName=f"{name}-errors",
            MetricName="Errors",
            Namespace="AWS/Lambda",
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
        # A pause without duration: every rollout waits for `promote` at 10%.
        document = rollout_document(name, function=name, version="2", strategy=canary(10, None, 50, None))
        document["spec"]["analysis"] = {"alarms": [f"{name}-errors"]}
        write_document(tmp_path, document)
    harness = EngineHarness(aws, tmp_path)
    try:
        harness.drive(lambda: all(phase_is(harness, f"idle-{i:02d}", Phase.PAUSED)() for i in range(ROLLOUTS)))
        harness.tick(5.0)  # settle: the last records are written
        aws.clear_calls()

        harness.tick(5.0)

        calls = Counter((c.service, c.operation) for c in aws.calls())
        assert calls[("cloudwatch", "DescribeAlarms")] == 1
        assert [op for (service, op) in calls if service == "lambda"] == []
        # One GetResources for the control requests of alias "live", whatever the number of rollouts.
        assert sum(calls.values()) == 2, calls
    finally:
        harness.close()
