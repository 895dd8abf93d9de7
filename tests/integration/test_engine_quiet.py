"""The engine skips the reconcile of a quiet rollout, and never one whose answer may have changed.

A rollout waiting at a pause is not reconciled again while nothing it depends on changed (no
report, no AWS call); an alarm in ALARM, a control request, the end of a timed pause, a drift check
or a spec edit each bring it back on the very tick they happen.
"""

from __future__ import annotations

from pathlib import Path

from controller.core.reasons import Reason
from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    canary,
    phase_is,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    send_request,
    set_alarm,
    write_document,
)

KEY = "default/pay"


def start(aws: Emulator, docs: Path, harness: EngineHarness, *steps: int | float | None) -> None:
    """A rollout of pay 1 -> 2 watching one alarm, driven until it waits at its first pause."""
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    document = rollout_document("pay", function="pay", version="2", strategy=canary(*steps), alarms=["pay-errors"])
    write_document(docs, document)
    harness.reload()
    harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.1}))
    harness.tick(1.0)  # the record saying "paused" is written
    harness.tick(1.0)  # the first answer that changes nothing: remembered from here on


def reconciles(harness: EngineHarness) -> int:
    return len(harness.sink.reports.get(KEY, []))


def assert_skipped(aws: Emulator, harness: EngineHarness, *, seconds: float = 5.0) -> None:
    before = reconciles(harness)
    aws.clear_calls()
    harness.tick(seconds)
    assert reconciles(harness) == before
    assert [c.operation for c in aws.calls() if c.service == "lambda"] == []


def test_a_rollout_waiting_for_promote_is_not_reconciled_until_an_alarm_fires(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    start(aws, docs, harness, 10, None, 50)
    status = harness.status("pay")
    assert status.phase is Phase.PAUSED
    for _ in range(3):
        assert_skipped(aws, harness)
    assert harness.status("pay") == status

    set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
    harness.tick(1.0)

    assert alias_routing(aws, "pay", "live") == ("1", {})
    assert harness.status("pay").phase is Phase.ROLLED_BACK


def test_a_request_is_handled_on_the_tick_it_arrives(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    start(aws, docs, harness, 10, None, 50)
    assert_skipped(aws, harness)

    send_request(aws, "pay", "live", Verb.PROMOTE)
    harness.tick(1.0)

    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.5})


def test_a_timed_pause_ends_on_time_and_its_countdown_is_refreshed(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    start(aws, docs, harness, 10, 100, 50)
    first = harness.status("pay")
    assert first.reason == Reason.BAKING
    assert_skipped(aws, harness, seconds=5.0)
    assert harness.status("pay") == first  # within the refresh: the same answer, not reconciled

    harness.tick(30.0)  # past the refresh: reconciled, the countdown moved
    assert harness.status("pay").message != first.message
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.1})

    harness.tick(70.0)  # the pause's end (100 s after the weight) has passed: the next step
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.5})


def test_a_due_drift_check_reads_the_alias_and_sees_a_hand_change(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    start(aws, docs, harness, 10, None, 50)
    aws.client("lambda").update_alias(FunctionName="pay", Name="live", FunctionVersion="1", RoutingConfig={})
    assert_skipped(aws, harness)  # not noticed until the alias is read: the drift check's job

    aws.clear_calls()
    harness.tick(harness.engine.settings.drift_interval)

    # The alias read, then the record saying the rollout holds on drift.
    assert [c.operation for c in aws.calls() if c.service == "lambda"] == ["GetAlias", "TagResource"]
    assert phase_is(harness, "pay", Phase.PAUSED)()
    assert harness.status("pay").reason == Reason.ALIAS_DRIFT


def test_a_spec_edit_is_decided_on_the_next_tick(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    start(aws, docs, harness, 10, None, 50)
    assert_skipped(aws, harness)

    document = rollout_document(
        "pay", function="pay", version="2", strategy=canary(10, None, 50), alarms=["pay-errors"]
    )
    document["spec"]["paused"] = True
    write_document(docs, document)
    harness.reload()
    harness.tick(1.0)

    assert harness.status("pay").reason == Reason.PAUSED_BY_SPEC
