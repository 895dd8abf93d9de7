"""The engine's skip of quiet rollouts (``controller.runtime.quiet``) against the pure core.

The engine does not reconcile a rollout whose last answer changed nothing while its inputs hold and
``now`` is before the instant the core asked to look again. That is only right if the core's answer
really does not move with time alone: this checks it over random histories of the simulated shell
(clock jumps, alarms, requests, drift, spec edits), deciding again at later instants with the same
inputs, as a skipped tick would have (the alias not read).
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.context import warming
from controller.core.types import Decision, Phase
from controller.document.model import Concurrency, Hooks, Strategy
from controller.runtime.quiet import remember, settled, still_quiet
from tests.unit.histories import HOOKS, STRATEGIES, WARM, make_world, random_histories
from tests.unit.simulator import World


def skippable(world: World, decision: Decision) -> bool:
    """What the engine checks beyond the decision: no request, no watched alarm firing, not warming."""
    record = world.record
    if record is None or not settled(decision) or record.pending is not None or warming(world.spec, record):
        return False
    waiting = world.request is not None and world.request.id != record.last_request
    return not waiting and not (world.alarms & set(world.spec.analysis.alarms))


def later_instants(decision: Decision) -> tuple[float, ...]:
    if decision.requeue_after is None:
        return (0.5, 5.0, 600.0, 1e5, 1e7)
    left = decision.requeue_after
    return tuple(dt for dt in (0.0, left / 2, left - 0.01) if 0 <= dt < left)


def assert_same_answer_later(world: World, decision: Decision) -> None:
    saved, request = world.now, world.request
    world.request = None  # handled (or none): the engine skips only when no request tag is there
    try:
        for dt in later_instants(decision):
            world.now = saved + dt
            again = world.decide(read=False)
            assert settled(again), (dt, decision, again)
            assert again.record == decision.record, dt
            if decision.requeue_after is None:
                assert again == decision, (dt, decision, again)
            else:
                # A timed wait: only the countdown in the message may move, and the wait only shrinks.
                assert dataclasses.replace(again.status, message="") == dataclasses.replace(decision.status, message="")
                assert again.requeue_after is not None and again.requeue_after <= decision.requeue_after
    finally:
        world.now, world.request = saved, request


@random_histories()
def test_a_quiet_answer_does_not_change_with_time_alone(
    strategy: Strategy,
    deadline: float | None,
    concurrency: Concurrency | None,
    hooks: Hooks | None,
    revert: bool,
    ops: list[tuple[object, ...]],
) -> None:
    world = make_world(strategy, deadline, concurrency, hooks=hooks, revert=revert)
    for op in ops:
        kind = op[0]
        if kind == "tick":
            _, dt, read, crash = op
            world.now += float(dt)  # type: ignore[arg-type]
            decision = world.tick(read=bool(read), crash=crash)  # type: ignore[arg-type]
            if crash is None and skippable(world, decision):
                assert_same_answer_later(world, decision)
        else:
            world.disturb(kind, op[1])  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(
    strategy=st.sampled_from(STRATEGIES),
    steps=st.lists(st.tuples(st.sampled_from((1.0, 5.0, 30.0, 59.0, 60.0, 295.0)), st.booleans()), max_size=40),
    deadline=st.sampled_from((None, 100.0)),
    concurrency=st.sampled_from((None, WARM)),
    hooks=st.sampled_from((None, HOOKS)),
)
def test_an_undisturbed_rollout_is_quiet_only_while_its_answer_holds(
    strategy: Strategy,
    steps: list[tuple[float, bool]],
    deadline: float | None,
    concurrency: Concurrency | None,
    hooks: Hooks | None,
) -> None:
    # Timed pauses, bakes, warm-ups and hooks at the engine's pace: most ticks do not read the alias.
    world = make_world(strategy, deadline, concurrency, hooks=hooks)
    for dt, read in steps:
        world.now += dt
        decision = world.tick(read=read)
        if skippable(world, decision):
            assert_same_answer_later(world, decision)


# ---- the skip condition itself -------------------------------------------------------------------


def paused_world() -> tuple[World, Decision]:
    world = make_world(STRATEGIES[3], None)  # waits for `promote` at 40%
    decision = world.settle()
    for _ in range(20):
        if decision.status.phase is Phase.PAUSED and settled(decision):
            break
        world.now += 600
        decision = world.settle()
    assert decision.status.phase is Phase.PAUSED and settled(decision)
    return world, decision


def test_the_skip_ends_with_any_changed_input() -> None:
    world, decision = paused_world()
    tags = {"record": "x"}
    quiet = remember(decision, spec=world.spec, tags=tags, started=world.now, refresh=30.0)
    assert quiet is not None
    base = {
        "spec": world.spec,
        "tags": dict(tags),
        "now": world.now + 5,
        "requested": False,
        "measured": False,
        "firing": frozenset[str](),
        "observer_settled": True,
        "time_scale": 1.0,
    }
    assert still_quiet(quiet, **base)  # type: ignore[arg-type]
    changed: list[dict[str, object]] = [
        {"spec": dataclasses.replace(world.spec)},  # a new spec object (the source changed)
        {"tags": {"record": "y"}},  # the record or the owner tag changed
        {"requested": True},  # a control request waits
        {"measured": True},  # a metric was measured for it this tick
        {"firing": frozenset({"errors"})},  # a watched alarm is in ALARM
        {"observer_settled": False},  # an alarm check or declared settings are due
        {"tags": None},  # the function's tags were forgotten (NotFound)
    ]
    for change in changed:
        assert not still_quiet(quiet, **{**base, **change}), change  # type: ignore[arg-type]


def test_the_skip_ends_at_the_requeue_instant_and_refreshes_a_countdown() -> None:
    world, decision = paused_world()
    timed = dataclasses.replace(decision, requeue_after=100.0)
    quiet = remember(timed, spec=world.spec, tags={}, started=world.now, refresh=30.0)
    assert quiet is not None and quiet.until == world.now + 30.0
    short = remember(
        dataclasses.replace(decision, requeue_after=3.0), spec=world.spec, tags={}, started=world.now, refresh=30.0
    )
    assert short is not None and short.until == world.now + 3.0
    assert remember(decision, spec=world.spec, tags={}, started=world.now, refresh=30.0).until == float("inf")  # type: ignore[union-attr]


def test_only_answers_that_change_nothing_are_remembered() -> None:
    world, decision = paused_world()
    assert remember(decision, spec=world.spec, tags=None, started=world.now, refresh=30.0) is None
    for change in (
        {"record_changed": True},
        {"read_alias": True},
        {"read_provisioned": True},
        {"status": dataclasses.replace(decision.status, phase=Phase.INVALID)},
        {"status": dataclasses.replace(decision.status, phase=Phase.PENDING)},
    ):
        other = dataclasses.replace(decision, **change)  # type: ignore[arg-type]
        assert remember(other, spec=world.spec, tags={}, started=world.now, refresh=30.0) is None, change
