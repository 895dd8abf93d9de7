"""Per-tick AWS cost must not grow with idle rollouts: 50 paused rollouts, one quiet tick."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from controller.core.types import Phase
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    paused_rollout_document,
    phase_is,
    put_errors_alarm,
    seed_alias,
    write_document,
)

ROLLOUTS = 50


def test_quiet_tick_with_50_paused_rollouts(aws: Emulator, tmp_path: Path) -> None:
    cw = aws.client("cloudwatch")
    for index in range(ROLLOUTS):
        name = f"idle-{index:02d}"
        seed_alias(aws, name)
        put_errors_alarm(cw, f"{name}-errors")
        # A pause without duration: every rollout waits for `promote` at 10%.
        write_document(tmp_path, paused_rollout_document(name))
    with EngineHarness(aws, tmp_path) as harness:
        harness.drive(lambda: all(phase_is(harness, f"idle-{i:02d}", Phase.PAUSED)() for i in range(ROLLOUTS)))
        harness.tick(5.0)  # settle: the last records are written
        aws.clear_calls()

        harness.tick(5.0)

        calls = Counter((c.service, c.operation) for c in aws.calls())
        assert calls[("cloudwatch", "DescribeAlarms")] == 1
        # One alarm history read for every rollout in flight: an ALARM between two polls is not missed.
        assert calls[("cloudwatch", "DescribeAlarmHistory")] == 1
        assert [op for (service, op) in calls if service == "lambda"] == []
        # One GetResources for the control requests of alias "live", whatever the number of rollouts.
        assert sum(calls.values()) == 3, calls
