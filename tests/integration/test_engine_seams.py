"""The engine's seams for the daemons, against the strict emulator: the write gate, requests handed
over directly, what the sinks are told (reconciles, alias writes, alarm states, rollback reaction),
and events said once rather than on every tick.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.core.codec import decode_record, request_key
from controller.core.types import Phase, Request, Verb
from controller.emulator import Emulator
from controller.runtime.sink import ALARM, MISSING, OK
from tests.integration.helpers import (
    EngineHarness,
    FakeClock,
    alias_routing,
    alias_writes,
    canary,
    function_tags,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    write_calls,
    write_document,
)

KEY = "default/pay"


class Gate:
    """A write gate that closes after ``opens`` checks (None: stays as ``open`` says)."""

    def __init__(self, *, open: bool = True, opens: int | None = None) -> None:
        self.open = open
        self.opens = opens
        self.checks = 0

    def __call__(self) -> bool:
        self.checks += 1
        if self.opens is not None:
            return self.checks <= self.opens
        return self.open


def harness_for(aws: Emulator, docs: Path, gate: Gate, clock: FakeClock | None = None) -> EngineHarness:
    return EngineHarness(aws, docs, can_write=gate, clock=clock)


@pytest.fixture
def pay(aws: Emulator, docs: Path) -> Emulator:
    """``pay`` on version 1 behind ``live``, a rollout to version 2 (20%, then waiting), alarm watched."""
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    document = rollout_document("pay", function="pay", version="2", strategy=canary(20, None), alarms=["pay-errors"])
    write_document(docs, document)
    aws.clear_calls()
    return aws


def set_alarm(aws: Emulator, state: str) -> None:
    """Put the alarm in ``state`` by hand (it has no data: the emulator's evaluation leaves it there)."""
    aws.client("cloudwatch").set_alarm_state(AlarmName="pay-errors", StateValue=state, StateReason="test")


def test_a_closed_gate_prevents_every_write(pay: Emulator, docs: Path) -> None:
    gate = Gate(open=False)
    harness = harness_for(pay, docs, gate)
    try:
        for _ in range(3):
            harness.tick(1.0)
        assert gate.checks > 0, "the gate was never asked"
        assert write_calls(pay) == []
        assert alias_routing(pay, "pay", "live") == ("1", {})
        # Not a failure: nothing is reported as an error and nothing backs off.
        assert not any(r.error for r in harness.sink.reports.get(KEY, []))

        gate.open = True
        harness.tick(1.0)
        assert alias_routing(pay, "pay", "live") == ("1", {"2": 0.2})
    finally:
        harness.close()


def test_a_gate_closing_mid_reconcile_stops_before_the_alias_write(pay: Emulator, docs: Path) -> None:
    # Open for exactly one write: the write-ahead record. The alias write right after must not happen.
    first = harness_for(pay, docs, Gate(opens=1))
    try:
        first.tick(1.0)
    finally:
        first.close()
    assert write_calls(pay) == ["TagResource"]
    assert alias_routing(pay, "pay", "live") == ("1", {})

    # The next leader completes the write the record announced, once.
    second = harness_for(pay, docs, Gate())
    try:
        second.drive(lambda: alias_routing(pay, "pay", "live") == ("1", {"2": 0.2}))
        second.tick(1.0)
    finally:
        second.close()
    assert len(alias_writes(pay, "pay", "live")) == 1


def test_a_request_submitted_to_the_inbox_is_handled_once_without_a_tag(pay: Emulator, docs: Path) -> None:
    harness = harness_for(pay, docs, Gate())
    try:
        harness.drive(lambda: alias_routing(pay, "pay", "live") == ("1", {"2": 0.2}))
        abort = Request(id="abort-1", verb=Verb.ABORT, at=time.time(), by="someone")
        pay.clear_calls()
        harness.engine.inbox.submit(KEY, abort)
        harness.tick(1.0)

        assert harness.status("pay").phase is Phase.ROLLED_BACK
        assert alias_routing(pay, "pay", "live") == ("1", {})
        record = decode_record("live", function_tags(pay, "pay"))
        assert record is not None and record.last_request == abort.id
        # No request tag was written, and none (a GitOps request, say) was removed on its behalf.
        assert request_key("live") not in function_tags(pay, "pay")
        untagged = [c.params for c in pay.calls() if c.operation == "UntagResource"]
        assert not any(request_key("live") in str(params) for params in untagged)
        # Submitted again (a replayed link, say): the record says it was handled, nothing happens twice.
        pay.clear_calls()
        harness.engine.inbox.submit(KEY, abort)
        harness.tick(1.0)
        assert write_calls(pay) == []
    finally:
        harness.close()


def test_sinks_hear_reconciles_alias_writes_alarm_states_and_the_rollback_reaction(pay: Emulator, docs: Path) -> None:
    clock = FakeClock()
    gate = Gate()
    harness = harness_for(pay, docs, gate, clock)
    try:
        harness.drive(lambda: alias_routing(pay, "pay", "live") == ("1", {"2": 0.2}))
        assert harness.sink.writes[KEY][-1].rollback is False
        assert harness.sink.reports[KEY][-1].alarm_states == {"pay-errors": OK}
        assert all(r.seconds > 0 and r.error is None for r in harness.sink.reports[KEY])

        # The alarm is seen by a tick that cannot write; the rollback lands 2.5 s later.
        set_alarm(pay, "ALARM")
        gate.open = False
        harness.tick(1.0)
        assert alias_routing(pay, "pay", "live") == ("1", {"2": 0.2})
        gate.open = True
        harness.tick(2.5)
        assert harness.sink.reports[KEY][-1].alarm_states == {"pay-errors": ALARM}

        rollback = harness.sink.writes[KEY][-1]
        assert rollback.rollback and rollback.alias == "live"
        assert rollback.reaction_seconds == pytest.approx(2.5)
        assert alias_routing(pay, "pay", "live") == ("1", {})
        # Reported once per firing: later writes carry no reaction.
        assert [w.reaction_seconds for w in harness.sink.writes[KEY] if w.reaction_seconds is not None] == [
            pytest.approx(2.5)
        ]
    finally:
        harness.close()


def test_an_invalid_rollout_tells_its_event_once(aws: Emulator, docs: Path) -> None:
    seed_alias(aws, "late", versions=1)
    write_document(docs, rollout_document("late", function="late", version="7", strategy=canary(20, None)))
    harness = harness_for(aws, docs, Gate())
    try:
        for _ in range(6):
            harness.tick(120.0)  # past the slow retry of Invalid rollouts
        assert harness.status("late").phase is Phase.INVALID
        assert len(harness.sink.reports["default/late"]) >= 3, "the rollout was not reconciled again"
        said = harness.sink.events["default/late"]
        assert len(said) == len({(e.reason, e.message) for e in said}) >= 1
    finally:
        harness.close()


def test_missing_alarms_are_reported_missing(aws: Emulator, docs: Path) -> None:
    seed_alias(aws, "ghost")
    document = rollout_document("ghost", function="ghost", version="2", strategy=canary(20, None), alarms=["nope"])
    write_document(docs, document)
    harness = harness_for(aws, docs, Gate())
    try:
        harness.tick(1.0)
        assert harness.sink.reports["default/ghost"][-1].alarm_states == {"nope": MISSING}
    finally:
        harness.close()
