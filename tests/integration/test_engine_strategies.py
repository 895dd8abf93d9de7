"""Every strategy walked end to end by the engine against the strict emulator, tick by tick.

The clock is fake (pauses pass instantly) but every AWS call is real HTTP through botocore; the
emulator's call log shows which weights the alias really went through, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from helpers import (
    EngineHarness,
    alias_routing,
    alias_writes,
    canary,
    phase_is,
    rollout_document,
    send_request,
    write_document,
    written_weights,
)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    path = tmp_path / "rollouts"
    path.mkdir()
    return path


@pytest.fixture
def harness(aws: Emulator, docs: Path) -> Iterator[EngineHarness]:
    h = EngineHarness(aws, docs)
    yield h
    h.close()


def make_alias(emulator: Emulator, function: str, alias: str, version: str) -> None:
    emulator.client("lambda").create_alias(FunctionName=function, Name=alias, FunctionVersion=version)


def test_canary_with_three_steps_reaches_100_percent(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    aws.seed_function("orders", versions=2)
    make_alias(aws, "orders", "live", "1")
    write_document(docs, rollout_document("orders", function="orders", version="2", strategy=canary(10, 5, 30, 5, 60, 5)))
    aws.clear_calls()
    harness.reload()
    harness.watch = ("orders", "live")

    harness.drive(phase_is(harness, "orders", Phase.HEALTHY), step=1.0)

    assert harness.seen == [("1", {"2": 0.1}), ("1", {"2": 0.3}), ("1", {"2": 0.6}), ("2", {})]
    # One UpdateAlias per step, nothing more: the call log agrees with what was observed.
    assert len(alias_writes(aws, "orders", "live")) == 4
    status = harness.status("orders")
    assert (status.stable_version, status.canary_version) == ("2", None)
