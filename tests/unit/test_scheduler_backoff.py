"""A failed reconcile backs its rollout off: from one interval, or from a second when AWS only faltered."""

from __future__ import annotations

import logging

import pytest

from controller.document.model import AllAtOnceStrategy, RolloutSpec
from controller.observability.logs import rollout_logger
from controller.runtime.rollouts import Rollout
from controller.runtime.scheduler import TRANSIENT_BACKOFF, Scheduler

SPEC = RolloutSpec(
    namespace="default", name="orders", function_name="orders", alias="live", strategy=AllAtOnceStrategy()
)


def _scheduler(rand: float) -> Scheduler:
    return Scheduler(
        interval=5.0,
        drift_interval=600.0,
        drift_fraction=0.01,
        backoff_cap=300.0,
        invalid_retry_cap=300.0,
        clock=lambda: 1000.0,
        rand=lambda: rand,
    )


def _rollout() -> Rollout:
    return Rollout(spec=SPEC, log=rollout_logger(logging.getLogger("controller.test"), SPEC))


@pytest.mark.parametrize("rand", [0.0, 1.0])
def test_a_transient_failure_is_retried_within_a_second_then_later_and_later(rand: float) -> None:
    scheduler, rollout = _scheduler(rand), _rollout()
    delays = [scheduler.failed(rollout, transient=True) for _ in range(4)]
    # Equal jitter: between half the ceiling and the ceiling, the ceiling doubling from 1 s.
    ceilings = [TRANSIENT_BACKOFF * 2**n for n in range(4)]
    assert delays == [c * (0.5 + 0.5 * rand) for c in ceilings]
    assert rollout.retry_at == 1000.0 + delays[-1]


def test_any_other_failure_backs_off_from_one_interval() -> None:
    scheduler, rollout = _scheduler(0.0), _rollout()
    assert scheduler.failed(rollout) == 2.5
    assert scheduler.failed(rollout) == 5.0
