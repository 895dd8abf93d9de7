"""promotions and rollbacks are labelled from what really happened, as docs/metrics.md says.

A rollout always reaches Healthy with the core's reason ``Promoted``, so the kind of promotion
(``full``, ``manual``) must come from the attempt's history, and a spec set back to the stable
version (``SpecReverted``, Healthy) is a manual rollback, not a promotion.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from controller.core.types import HistoryEntry, Phase, Status
from controller.observability.prometheus import Metrics
from controller.runtime.sink import MetricsSink
from tests.unit.test_prometheus import IDENTITY, SPEC, value

PAUSED = Status(
    phase=Phase.PAUSED,
    stable_version="1",
    canary_version="2",
    canary_weight=10,
    current_step=1,
    steps=3,
    step_started_at=0.0,
    message="",
    reason="WaitingForPromote",
)


def healthy(*history: HistoryEntry, stable: str = "2", reason: str = "Promoted") -> Status:
    return dataclasses.replace(
        PAUSED, phase=Phase.HEALTHY, stable_version=stable, canary_version=None, reason=reason, history=history
    )


def counted(status: Status) -> Metrics:
    metrics = Metrics()
    sink = MetricsSink(metrics, clock=lambda: 10.0)

    async def scenario() -> None:
        await sink.status_changed(spec=SPEC, status=PAUSED, previous=None)
        await sink.status_changed(spec=SPEC, status=status, previous=PAUSED)

    asyncio.run(scenario())
    return metrics


PLAN_ENDED = HistoryEntry("2", "Promoted", "Promoted", 9.0)


@pytest.mark.parametrize(
    ("history", "kind"),
    [
        ((HistoryEntry("1", "Promoted", "Promoted", 1.0), PLAN_ENDED), "auto"),
        ((HistoryEntry("2", "Requested", "promote", 5.0, "alice"), PLAN_ENDED), "manual"),
        ((HistoryEntry("2", "Promoted", "PromoteFull", 5.0, "alice"),), "full"),
        ((HistoryEntry("2", "Promoted", "EmergencyBypass", 5.0, "alice"),), "full"),
        # A promote request of an earlier attempt of another version does not count.
        ((HistoryEntry("1", "Requested", "promote", 1.0, "bob"), PLAN_ENDED), "auto"),
    ],
)
def test_promotion_kind_comes_from_the_attempts_history(history: tuple[HistoryEntry, ...], kind: str) -> None:
    metrics = counted(healthy(*history))
    assert value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind=kind) == 1
    others = [k for k in ("auto", "manual", "full") if k != kind]
    assert all(value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind=k) == 0 for k in others)


def test_spec_reverted_is_a_manual_rollback_not_a_promotion() -> None:
    reverted = healthy(HistoryEntry("2", "Aborted", "SpecReverted", 9.0), stable="1", reason="SpecReverted")
    metrics = counted(reverted)
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="manual") == 1
    for kind in ("auto", "manual", "full"):
        assert value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind=kind) == 0
