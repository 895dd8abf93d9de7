"""Plans: every CodeDeploy preset pinned to its documented behaviour, and the custom builders."""

from __future__ import annotations

import pytest

from controller.core.plan import PRESET_PLANS, build_plan, preset_plan
from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    LinearStrategy,
    Pause,
    PresetStrategy,
    SetWeight,
    Step,
)


def linear(interval: float) -> tuple[Step, ...]:
    steps: list[Step] = []
    for weight in range(10, 100, 10):
        steps += [SetWeight(weight), Pause(interval)]
    return tuple(steps)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AllAtOnce", ()),
        ("Canary10Percent5Minutes", (SetWeight(10), Pause(300))),
        ("Canary10Percent10Minutes", (SetWeight(10), Pause(600))),
        ("Canary10Percent15Minutes", (SetWeight(10), Pause(900))),
        ("Canary10Percent30Minutes", (SetWeight(10), Pause(1800))),
        ("Linear10PercentEvery1Minute", linear(60)),
        ("Linear10PercentEvery2Minutes", linear(120)),
        ("Linear10PercentEvery3Minutes", linear(180)),
        ("Linear10PercentEvery10Minutes", linear(600)),
    ],
)
def test_presets_follow_codedeploy(name: str, expected: tuple[Step, ...]) -> None:
    assert build_plan(PresetStrategy(name)) == expected


def test_every_preset_is_pinned() -> None:
    assert len(PRESET_PLANS) == 9


def test_linear_every_minute_reaches_90_then_final() -> None:
    plan = build_plan(PresetStrategy("Linear10PercentEvery1Minute"))
    weights = [s.weight for s in plan if isinstance(s, SetWeight)]
    assert weights == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert isinstance(plan[-1], Pause)


@pytest.mark.parametrize(
    "spelling", ["LambdaCanary10Percent5Minutes", "CodeDeployDefault.LambdaCanary10Percent5Minutes"]
)
def test_prefixed_spellings(spelling: str) -> None:
    assert preset_plan(spelling) == (SetWeight(10), Pause(300))


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="not a CodeDeploy"):
        preset_plan("Canary50Percent1Minute")


@pytest.mark.parametrize(
    ("step_percent", "interval", "expected"),
    [
        (25, 30.0, (SetWeight(25), Pause(30), SetWeight(50), Pause(30), SetWeight(75), Pause(30))),
        (30, 10.0, (SetWeight(30), Pause(10), SetWeight(60), Pause(10), SetWeight(90), Pause(10))),
        (50, 5.0, (SetWeight(50), Pause(5))),
        (100, 5.0, ()),
    ],
)
def test_linear(step_percent: int, interval: float, expected: tuple[Step, ...]) -> None:
    assert build_plan(LinearStrategy(step_percent=step_percent, interval=interval)) == expected


def test_canary_steps_are_kept_with_indefinite_pauses() -> None:
    steps = (SetWeight(5), Pause(60), SetWeight(25), Pause())
    assert build_plan(CanaryStrategy(steps)) == steps


def test_canary_weights_outside_range_never_reach_a_write() -> None:
    steps = (SetWeight(0), SetWeight(5), Pause(60), SetWeight(100), Pause(60), SetWeight(50))
    assert build_plan(CanaryStrategy(steps)) == (SetWeight(5), Pause(60))


def test_time_scale_scales_pauses_only() -> None:
    steps = (SetWeight(5), Pause(60), SetWeight(25), Pause())
    assert build_plan(CanaryStrategy(steps), time_scale=0.1) == (SetWeight(5), Pause(6), SetWeight(25), Pause())
    assert build_plan(PresetStrategy("Canary10Percent5Minutes"), time_scale=0.01) == (SetWeight(10), Pause(3))


def test_all_at_once_and_blue_green_have_no_weight_steps() -> None:
    assert build_plan(AllAtOnceStrategy()) == ()
    assert build_plan(BlueGreenStrategy(preview_alias="green")) == ()
