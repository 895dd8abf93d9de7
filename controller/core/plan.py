"""Every weight strategy compiles to one plan: a tuple of ``SetWeight`` / ``Pause`` steps.

One engine (``decide``) walks every plan, so presets, ``linear``, ``canary`` and ``allAtOnce`` are
nothing but plan builders here. The final move to 100% is implicit after the last step: it is a
different alias write (the new version becomes the primary, no additional weights), so keeping it
out of the plan means a plan can never ask for the invalid ``weight: 100`` on an additional version.

Blue/green is not a weight plan (it moves whole aliases, see ``core.bluegreen``); ``build_plan``
returns ``()`` for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    LinearStrategy,
    Pause,
    PresetStrategy,
    SetWeight,
    Step,
    Strategy,
)

_MINUTE = 60.0


def _canary(percent: int, minutes: int) -> tuple[Step, ...]:
    # CodeDeploy: "percent of traffic in the first increment; the rest `minutes` later".
    return (SetWeight(percent), Pause(minutes * _MINUTE))


def _linear(percent: int, interval: float) -> tuple[Step, ...]:
    # CodeDeploy: "percent more traffic every interval until all traffic is shifted": each weight
    # below 100 bakes for a full interval, then the implicit final move takes the rest.
    steps: list[Step] = []
    weight = percent
    while weight < 100:
        steps += [SetWeight(weight), Pause(interval)]
        weight += percent
    return tuple(steps)


# The CodeDeploy Lambda deployment configurations, by canonical name, at time scale 1.
PRESET_PLANS: Mapping[str, tuple[Step, ...]] = {
    "AllAtOnce": (),
    "Canary10Percent5Minutes": _canary(10, 5),
    "Canary10Percent10Minutes": _canary(10, 10),
    "Canary10Percent15Minutes": _canary(10, 15),
    "Canary10Percent30Minutes": _canary(10, 30),
    "Linear10PercentEvery1Minute": _linear(10, 1 * _MINUTE),
    "Linear10PercentEvery2Minutes": _linear(10, 2 * _MINUTE),
    "Linear10PercentEvery3Minutes": _linear(10, 3 * _MINUTE),
    "Linear10PercentEvery10Minutes": _linear(10, 10 * _MINUTE),
}

# The loader canonicalises names already; stripping here keeps the core total if it is handed a
# name spelt the way CodeDeploy, SAM or CDK spell it.
_PREFIXES = ("CodeDeployDefault.Lambda", "Lambda")


def preset_plan(name: str) -> tuple[Step, ...]:
    """The plan of a CodeDeploy preset; raises ``ValueError`` for an unknown name."""
    for prefix in _PREFIXES:
        if name.startswith(prefix) and name[len(prefix) :] in PRESET_PLANS:
            name = name[len(prefix) :]
            break
    try:
        return PRESET_PLANS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a CodeDeploy Lambda preset") from None


def _normalise(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    # The loader rejects weights of 0 or 100 inside canary steps; the core still refuses to emit an
    # invalid alias write if handed one: 0 or less is dropped, 100 or more ends the plan (the final
    # move is implicit).
    out: list[Step] = []
    for step in steps:
        if isinstance(step, SetWeight):
            if step.weight >= 100:
                break
            if step.weight <= 0:
                continue
        out.append(step)
    return tuple(out)


def _scale(steps: tuple[Step, ...], time_scale: float) -> tuple[Step, ...]:
    return tuple(
        Pause(step.duration * time_scale) if isinstance(step, Pause) and step.duration is not None else step
        for step in steps
    )


def build_plan(strategy: Strategy, *, time_scale: float = 1.0) -> tuple[Step, ...]:
    """The ``SetWeight`` / ``Pause`` steps of ``strategy``; the move to 100% follows the last one.

    ``time_scale`` multiplies every pause duration (the demo and the tests scale minutes down).
    """
    steps: tuple[Step, ...]
    if isinstance(strategy, PresetStrategy):
        steps = preset_plan(strategy.name)
    elif isinstance(strategy, CanaryStrategy):
        steps = strategy.steps
    elif isinstance(strategy, LinearStrategy):
        steps = _linear(strategy.step_percent, strategy.interval) if strategy.step_percent > 0 else ()
    elif isinstance(strategy, AllAtOnceStrategy | BlueGreenStrategy):
        steps = ()
    else:  # pragma: no cover - the Strategy union is closed
        raise TypeError(f"unknown strategy {strategy!r}")
    return _scale(_normalise(steps), time_scale)
