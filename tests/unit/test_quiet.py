"""The engine's skip of quiet rollouts (``controller.runtime.quiet``) against the pure core.

The engine does not reconcile a rollout whose last answer changed nothing while its inputs hold and
``now`` is before the instant the core asked to look again. That is only right if the core's answer
really does not move with time alone: this checks it over random histories of the simulated shell
(clock jumps, alarms, requests, drift, spec edits), deciding again at later instants with the same
inputs, as a skipped tick would have (the alias not read). Half of the histories declare sequential
tests, whose periods come and go with the clock (a period due is never skipped).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.analysis import Evidence
from controller.core.context import warming
from controller.core.reasons import Reason
from controller.core.sequential import Look
from controller.core.types import (
    Decision,
    HookAnswer,
    Measurement,
    Observed,
    Phase,
    Request,
    SequentialLooks,
    Verb,
    Verdict,
)
from controller.document.model import CanaryStrategy, Concurrency, Hooks, Pause, SequentialTest, SetWeight, Strategy
from controller.runtime.quiet import remember, settled, still_quiet
from controller.runtime.reads import Inputs
from tests.unit.histories import (
    HOOKS,
    SEQUENTIAL,
    STRATEGIES,
    WARM,
    make_world,
    random_histories,
    sequential_histories,
)
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


@random_histories(sequential=st.sampled_from(((), SEQUENTIAL)))
def test_a_quiet_answer_does_not_change_with_time_alone(
    strategy: Strategy,
    deadline: float | None,
    concurrency: Concurrency | None,
    hooks: Hooks | None,
    revert: bool,
    sequential: tuple[SequentialTest, ...],
    ops: list[tuple[object, ...]],
) -> None:
    world = make_world(strategy, deadline, concurrency, hooks=hooks, revert=revert, sequential=sequential)
    replay(world, ops)


@sequential_histories()
def test_a_quiet_answer_does_not_change_with_time_alone_while_periods_are_read(
    strategy: Strategy, deadline: float | None, ops: list[tuple[object, ...]]
) -> None:
    replay(make_world(strategy, deadline, sequential=SEQUENTIAL), ops)


def replay(world: World, ops: list[tuple[object, ...]]) -> None:
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


def inputs(world: World, **changes: object) -> Inputs:
    return dataclasses.replace(Inputs(spec=world.spec, tags={"record": "x"}), **changes)  # type: ignore[arg-type]


def test_the_skip_ends_with_any_changed_input() -> None:
    world, decision = paused_world()
    quiet = remember(decision, inputs=inputs(world), started=world.now, refresh=30.0)
    assert quiet is not None
    later = world.now + 5
    assert still_quiet(quiet, inputs(world), now=later, settings_due=False, time_scale=1.0)
    request = Request(id="r1", verb=Verb.PROMOTE, at=later)
    measured = {"error-rate": Measurement(version="2", at=later, window_start=later - 60)}
    answer = HookAnswer("beforeAllowTraffic", "2", None, Verdict.SUCCESSFUL)
    looks = SequentialLooks("0123abcd", "2", "1", (Look(later - 60, later, 10, 0, 90, 1),))
    # Every field of the inputs counts: whatever the tick knows about a rollout is compared.
    changed: list[Inputs] = [
        inputs(world, spec=dataclasses.replace(world.spec, paused=True)),  # the spec changed
        inputs(world, tags={"record": "y"}),  # the record or the owner tag changed
        inputs(world, tags=None),  # the function's tags were forgotten (NotFound)
        inputs(world, request=request),  # a control request waits
        inputs(world, evidence=Evidence(firing=frozenset({"errors"}))),  # a watched alarm is in ALARM
        inputs(world, evidence=Evidence(missing_alarms=frozenset({"errors"}))),  # a watched alarm vanished
        inputs(world, evidence=Evidence(measurements=measured)),  # a metric was measured for it this tick
        inputs(world, evidence=Evidence(hook_answers=(answer,))),  # a hook answered
        inputs(world, evidence=Evidence(hooks_running={"beforeAllowTraffic": later})),  # a hook runs
        inputs(world, evidence=Evidence(looks={"errors": looks})),  # a sequential test's periods were read
    ]
    for change in changed:
        assert not still_quiet(quiet, change, now=later, settings_due=False, time_scale=1.0), change
    assert not still_quiet(quiet, inputs(world), now=later, settings_due=True, time_scale=1.0)


def test_every_kind_of_evidence_is_part_of_the_inputs() -> None:
    # The skip compares Inputs whole; a new field of Evidence is compared with no change to the skip.
    names = {f.name for f in dataclasses.fields(Evidence)}
    assert names <= {f.name for f in dataclasses.fields(Observed)} | {"firing"}, names


def test_the_skip_ends_at_the_requeue_instant_and_refreshes_a_countdown() -> None:
    world, decision = paused_world()
    timed = dataclasses.replace(decision, requeue_after=100.0)
    quiet = remember(timed, inputs=inputs(world), started=world.now, refresh=30.0)
    assert quiet is not None and quiet.until == world.now + 30.0
    short = remember(
        dataclasses.replace(decision, requeue_after=3.0), inputs=inputs(world), started=world.now, refresh=30.0
    )
    assert short is not None and short.until == world.now + 3.0
    forever = remember(decision, inputs=inputs(world), started=world.now, refresh=30.0)
    assert forever is not None and forever.until == float("inf")


def test_only_answers_that_change_nothing_are_remembered() -> None:
    world, decision = paused_world()
    assert remember(decision, inputs=inputs(world, tags=None), started=world.now, refresh=30.0) is None
    for change in (
        {"record_changed": True},
        {"read_alias": True},
        {"read_provisioned": True},
        {"status": dataclasses.replace(decision.status, phase=Phase.INVALID)},
        {"status": dataclasses.replace(decision.status, phase=Phase.PENDING)},
    ):
        other = dataclasses.replace(decision, **change)  # type: ignore[arg-type]
        assert remember(other, inputs=inputs(world), started=world.now, refresh=30.0) is None, change


def test_a_period_due_is_never_skipped() -> None:
    test = SequentialTest("errors", period=60.0, publication_delay=30.0)
    world = make_world(CanaryStrategy((SetWeight(10), Pause())), None, sequential=(test,))
    world.now = 1_020.0  # a whole minute: the weight's first period is [1020, 1080), due at 1110
    world.settle()
    world.now += 5
    decision = world.tick()
    assert decision.status.reason == Reason.WAITING_FOR_PROMOTE and settled(decision)
    assert decision.requeue_after == pytest.approx(1_110.0 - world.now)
    quiet = remember(decision, inputs=inputs(world), started=world.now, refresh=1e6)
    assert quiet is not None and quiet.until == pytest.approx(1_110.0)
    # Had the core not asked to be woken (or the wake come late), the period due ends the skip itself.
    quiet = dataclasses.replace(quiet, until=float("inf"))
    assert still_quiet(quiet, inputs(world), now=1_109.0, settings_due=False, time_scale=1.0)
    assert not still_quiet(quiet, inputs(world), now=1_110.0, settings_due=False, time_scale=1.0)
