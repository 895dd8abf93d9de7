"""Every strategy walked end to end by the engine against the strict emulator, tick by tick.

The clock is fake (pauses pass instantly) but every AWS call is real HTTP through botocore; the
emulator's call log shows which weights the alias really went through, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    alias_writes,
    canary,
    phase_is,
    rollout_document,
    seed_alias,
    send_request,
    write_document,
)


@pytest.mark.parametrize(
    ("strategy", "weights"),
    [
        pytest.param(canary(10, 5, 30, 5, 60, 5), (0.1, 0.3, 0.6), id="canary-with-three-steps"),
        pytest.param({"linear": {"stepPercent": 25, "interval": "3s"}}, (0.25, 0.5, 0.75), id="linear-equal-steps"),
    ],
)
def test_stepped_strategies_go_through_each_weight_then_100_percent(
    aws: Emulator, docs: Path, harness: EngineHarness, strategy: dict[str, Any], weights: tuple[float, ...]
) -> None:
    seed_alias(aws, "orders")
    write_document(docs, rollout_document("orders", function="orders", version="2", strategy=strategy))
    aws.clear_calls()
    harness.reload()
    harness.watch = ("orders", "live")

    harness.drive(phase_is(harness, "orders", Phase.HEALTHY), step=1.0)

    assert harness.seen == [*(("1", {"2": weight}) for weight in weights), ("2", {})]
    # One UpdateAlias per step, nothing more: the call log agrees with what was observed.
    assert len(alias_writes(aws, "orders", "live")) == len(weights) + 1
    status = harness.status("orders")
    assert (status.stable_version, status.canary_version) == ("2", None)


def test_all_at_once_is_one_write(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    seed_alias(aws, "search")
    aws.clear_calls()
    write_document(docs, rollout_document("search", function="search", version="2", strategy={"allAtOnce": {}}))
    harness.reload()

    harness.drive(phase_is(harness, "search", Phase.HEALTHY))

    assert alias_routing(aws, "search", "live") == ("2", {})
    assert len(alias_writes(aws, "search", "live")) == 1


def test_preset_minutes_scaled_down(aws: Emulator, docs: Path) -> None:
    seed_alias(aws, "brand")
    preset = {"preset": "Canary10Percent5Minutes"}
    write_document(docs, rollout_document("brand", function="brand", version="2", strategy=preset))
    # 5 minutes become 5 seconds.
    with EngineHarness(aws, docs, time_scale=1 / 60, watch=("brand", "live")) as harness:
        harness.drive(phase_is(harness, "brand", Phase.PROGRESSING, Phase.PAUSED))
        shifted_at = harness.clock()
        harness.drive(phase_is(harness, "brand", Phase.HEALTHY), step=0.5)
        assert harness.clock() - shifted_at >= 5.0
        assert harness.seen == [("1", {"2": 0.1}), ("2", {})]


def test_blue_green_keeps_previous_and_undo_is_one_write(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    seed_alias(aws, "checkout")
    strategy = {
        "blueGreen": {
            "previewAlias": "green",
            "previousAlias": "previous",
            "autoPromote": True,
            "autoPromoteAfter": "2s",
        }
    }
    write_document(docs, rollout_document("checkout", function="checkout", version="2", strategy=strategy))
    harness.reload()

    harness.drive(phase_is(harness, "checkout", Phase.HEALTHY))

    assert alias_routing(aws, "checkout", "live") == ("2", {})
    assert alias_routing(aws, "checkout", "green")[0] == "2"
    assert alias_routing(aws, "checkout", "previous") == ("1", {})

    aws.clear_calls()
    send_request(aws, "checkout", "live", Verb.UNDO)
    harness.tick(1.0)

    assert alias_routing(aws, "checkout", "live") == ("1", {})
    assert [c.params.get("Name") for c in alias_writes(aws, "checkout")] == ["live"]
    harness.tick(1.0)
    assert len(alias_writes(aws, "checkout")) == 1


def test_alias_created_when_missing_and_latest_never_routed(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    aws.seed_function("fresh", versions=1)
    aws.clear_calls()
    write_document(docs, rollout_document("fresh", function="fresh", version="1", strategy=canary(50, 5)))
    harness.reload()

    harness.drive(phase_is(harness, "fresh", Phase.HEALTHY))

    # Nothing can reach a missing alias yet: it is created straight on the desired version.
    assert [c.operation for c in alias_writes(aws, "fresh")] == ["CreateAlias"]
    assert alias_routing(aws, "fresh", "live") == ("1", {})
    for call in alias_writes(aws):
        assert "$LATEST" not in str(call.params)
    assert "$LATEST" not in str(harness.seen)
