"""The retry policy's delays and the WARNING that says AWS is throttling: rate-limited, with counts."""

from __future__ import annotations

import logging

import pytest

from controller.aws.retries import CONNECTION, SERVER_ERROR, THROTTLED, FaultLog, RetryPolicy


def test_delays_are_full_jitter_under_a_doubling_ceiling() -> None:
    policy = RetryPolicy(attempts=5, base=0.05, cap=0.3)
    assert [policy.delay(n, lambda: 1.0) for n in range(1, 6)] == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
    assert policy.delay(3, lambda: 0.0) == 0.0
    assert policy.delay(2, lambda: 0.5) == pytest.approx(0.05)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_one_warning_per_family_then_at_most_one_per_period_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    faults = FaultLog(period=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="controller.aws"):
        faults.failed(family="lambda", reason=THROTTLED, retried=True)
        for _ in range(40):  # a storm: nothing more is said within the period
            clock.now += 0.5
            faults.failed(family="lambda", reason=THROTTLED, retried=True)
        faults.failed(family="lambda", reason=SERVER_ERROR, retried=False)
        faults.failed(family="tagging", reason=CONNECTION, retried=True)  # the network, not AWS: not said
        faults.failed(family="tagging", reason=SERVER_ERROR, retried=True)  # another family: said at once
        clock.now += 11.0  # 31 s after the first line
        faults.failed(family="lambda", reason=THROTTLED, retried=True)
    said = _said(caplog)
    assert len(said) == 3, said
    assert said[0].startswith("AWS is slowing down lambda calls: 1 throttled so far (all retried)")
    assert said[1].startswith("AWS is slowing down tagging calls: 1 answered with a server error so far (all retried)")
    # Everything since the first line: 41 throttles, one 500 that failed for good.
    assert said[2].startswith(
        "AWS is slowing down lambda calls: 1 answered with a server error, 41 throttled in the last 31s "
        "(1 still failing after every retry)"
    )
