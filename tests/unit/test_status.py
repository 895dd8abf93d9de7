"""One step numbering on every surface: from 1, the final move to 100% is a step, finished is N of N."""

from __future__ import annotations

import re

from controller.core.reasons import Reason
from controller.core.status import record_status, step_number
from controller.core.types import AliasRouting, Phase, Record, Verb
from controller.document.model import AllAtOnceStrategy, BlueGreenStrategy, CanaryStrategy, Pause, SetWeight
from tests.unit.simulator import World, api_spec, versions


def world(strategy: object) -> World:
    return World(spec=api_spec(strategy), alias=AliasRouting("1"), versions=versions("1", "2"))  # type: ignore[arg-type]


def numbers_in(message: str) -> tuple[int, int] | None:
    found = re.search(r"step (\d+) of (\d+)", message)
    return (int(found.group(1)), int(found.group(2))) if found else None


def test_a_canary_counts_its_steps_from_one_and_ends_at_n_of_n() -> None:
    w = world(CanaryStrategy((SetWeight(10), Pause(60))))
    seen = []
    decision = w.tick()
    seen.append((decision.status.current_step, decision.status.steps, numbers_in(decision.status.message)))
    decision = w.tick()
    seen.append((decision.status.current_step, decision.status.steps, numbers_in(decision.status.message)))
    w.now += 60
    decision = w.tick()
    seen.append((decision.status.current_step, decision.status.steps, numbers_in(decision.status.message)))
    decision = w.tick()
    assert decision.status.phase is Phase.HEALTHY
    seen.append((decision.status.current_step, decision.status.steps, None))
    # The status and the message agree at every step: write 10%, bake, final write, done.
    assert seen == [(1, 3, (1, 3)), (2, 3, (2, 3)), (3, 3, (3, 3)), (3, 3, None)]


def test_all_at_once_is_one_step_and_blue_green_four() -> None:
    w = world(AllAtOnceStrategy())
    first = w.tick().status
    assert (first.current_step, first.steps) == (1, 1)
    assert (w.tick().status.current_step, w.decisions[-1].status.phase) == (1, Phase.HEALTHY)
    w = world(BlueGreenStrategy(preview_alias="green"))
    steps = [w.tick().status.current_step]
    w.ask(Verb.PROMOTE)
    while w.decisions[-1].status.phase is not Phase.HEALTHY:
        steps.append(w.tick().status.current_step)
    assert steps[0] == 1 and steps[-1] == 4 and sorted(steps) == steps


def test_a_rolled_back_rollout_is_at_step_zero() -> None:
    w = world(CanaryStrategy((SetWeight(10), Pause(60))))
    w.tick()
    w.ask(Verb.ABORT)
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.ABORTED)
    assert decision.status.current_step == 0


def test_the_record_keeps_the_step_count_for_readers_without_the_document() -> None:
    w = world(CanaryStrategy((SetWeight(10), Pause(60), SetWeight(50), Pause())))
    decision = w.tick()
    assert w.record is not None and w.record.steps == 5
    # While the 10% write is pending the record is at step 1; once confirmed, baking is step 2.
    assert (record_status(decision.record).current_step, record_status(decision.record).steps) == (1, 5)
    assert (record_status(w.record).current_step, record_status(w.record).steps) == (2, 5)


def test_step_number_edges() -> None:
    assert step_number(Record(phase=Phase.HEALTHY, stable="1"), 4) == 4
    assert step_number(Record(phase=Phase.HEALTHY, stable="1"), 0) == 0
    assert step_number(Record(phase=Phase.PROGRESSING, stable="1", canary="2", step_index=9), 4) == 4
    assert step_number(Record(phase=Phase.PROGRESSING, stable="1", canary="2", step_index=9), 0) == 10
    assert step_number(Record(phase=Phase.PROMOTING, stable="1", canary="2", weight=100, step_index=2), 3) == 3
