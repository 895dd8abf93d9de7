"""Transitions written to the durable record's outbox, in the write that makes them (``core.announce``)."""

from __future__ import annotations

import dataclasses

from controller.core.announce import attempt_id, transition_id
from controller.core.reasons import Reason
from controller.core.types import AliasRouting, Phase, Trigger, Verb
from controller.document.model import Analysis, CanaryStrategy, Pause, SetWeight
from tests.unit.simulator import World, api_spec, versions


def world(*, announce: bool = True) -> World:
    spec = api_spec(
        CanaryStrategy((SetWeight(10), Pause(None), SetWeight(50), Pause(60))), analysis=Analysis(("errors",))
    )
    return World(spec=spec, alias=AliasRouting("1"), versions=versions("1", "2", "3"), announce=announce)


def outbox(w: World) -> list[tuple[Trigger, str]]:
    assert w.record is not None
    return [(entry.trigger, entry.reason) for entry in w.record.outbox]


def test_start_and_the_wait_for_promotion_are_in_the_outbox_with_the_write_that_makes_them() -> None:
    w = world()
    decision = w.tick()
    assert [e.trigger for e in decision.record.outbox] == [Trigger.STARTED]  # in the same record as the write
    w.tick()
    assert outbox(w) == [
        (Trigger.STARTED, Reason.ROLLOUT_STARTED),
        (Trigger.WAITING_FOR_PROMOTION, Reason.WAITING_FOR_PROMOTE),
    ]
    waiting = w.record.outbox[1]  # type: ignore[union-attr]
    assert (waiting.version, waiting.stable, waiting.weight, waiting.step, waiting.steps) == ("2", "1", 10, 2, 5)
    assert w.record is not None and waiting.attempt == attempt_id(version="2", started_at=w.record.started_at)


def test_delivered_entries_leave_the_record_and_nothing_is_announced_twice() -> None:
    w = world()
    w.tick()
    w.tick()
    assert w.record is not None
    w.announced = {entry.id for entry in w.record.outbox}
    cleared = w.tick()
    assert cleared.record_changed and cleared.record.outbox == () and not cleared.actions
    w.announced = set()
    assert not w.tick().record_changed  # quiet again: nothing new to tell


def test_a_rollback_names_the_attempt_it_ended_and_why() -> None:
    w = world()
    w.tick()
    assert w.record is not None
    started = w.record.started_at
    w.alarms = frozenset({"errors"})
    w.tick()
    [rolled] = [e for e in w.record.outbox if e.trigger is Trigger.ROLLED_BACK]  # type: ignore[union-attr]
    assert (rolled.reason, rolled.version, rolled.weight) == (Reason.ALARM_FIRED, "2", 10)
    assert rolled.attempt == attempt_id(version="2", started_at=started) and "errors" in rolled.message


def test_an_abort_says_who_asked_and_a_promotion_is_announced() -> None:
    w = world()
    w.tick()
    w.ask(Verb.ABORT, by="arn:aws:iam::1:user/ann")
    w.tick()
    [aborted] = [e for e in w.record.outbox if e.trigger is Trigger.ROLLED_BACK]  # type: ignore[union-attr]
    assert (aborted.reason, aborted.by) == (Reason.ABORTED, "arn:aws:iam::1:user/ann")
    w.with_spec(version="3")
    w.settle()
    w.ask(Verb.PROMOTE_FULL)
    w.settle()
    w.tick()
    assert w.record is not None and w.record.phase is Phase.HEALTHY
    assert (Trigger.PROMOTED, Reason.PROMOTED) in outbox(w)


def test_the_same_transition_decided_again_after_a_crash_has_the_same_id() -> None:
    first, second = world(), world()
    first.tick(crash="before-write")  # died before anything was written: the transition is decided again
    again = first.tick()
    direct = second.tick()
    assert [e.id for e in again.record.outbox] == [e.id for e in direct.record.outbox]
    entry = direct.record.outbox[0]
    assert entry.id == transition_id("ns/api", attempt=entry.attempt, trigger="Started")


def test_without_notifications_the_record_never_carries_an_outbox() -> None:
    w = world(announce=False)
    for _ in range(4):
        w.tick()
        assert w.record is not None and w.record.outbox == ()


def test_an_invalid_answer_writes_no_outbox() -> None:
    w = world()
    w.tick()
    w.with_spec(version="latest")  # not a version number: Invalid, and bad input writes nothing
    decision = w.decide()
    assert decision.status.phase is Phase.INVALID and not decision.record_changed
    assert dataclasses.replace(decision.record, outbox=()) == dataclasses.replace(w.record, outbox=())  # type: ignore[arg-type]
