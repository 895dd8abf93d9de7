"""Rollback on alarms, and bad input that must never reach AWS, against the strict emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.codec import decode_record
from controller.core.types import Phase
from controller.emulator import Emulator
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    alias_writes,
    canary,
    function_tags,
    phase_is,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    set_alarm,
    write_calls,
    write_document,
)


def test_alarm_mid_canary_rolls_back_within_one_tick_and_never_retries(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    document = rollout_document(
        "pay", function="pay", version="2", strategy=canary(20, 60, 50, 60), alarms=["pay-errors"]
    )
    write_document(docs, document)
    harness.reload()
    harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.2}))

    set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
    harness.tick(1.0)

    assert alias_routing(aws, "pay", "live") == ("1", {})
    status = harness.status("pay")
    assert status.phase is Phase.ROLLED_BACK
    assert "pay-errors" in f"{status.reason} {status.message}"

    # The alarm clears: the failed version is not tried again, by this engine or a new one.
    set_alarm(aws.client("cloudwatch"), "pay-errors", "OK")
    aws.clear_calls()
    for _ in range(3):
        harness.tick(120.0)
    restarted = EngineHarness(aws, docs, clock=harness.clock)
    try:
        for _ in range(3):
            restarted.tick(120.0)
        assert restarted.status("pay").phase is Phase.ROLLED_BACK
    finally:
        restarted.close()
    assert alias_writes(aws, "pay") == []
    assert alias_routing(aws, "pay", "live") == ("1", {})


def snapshot(emulator: Emulator, function: str, alias: str) -> tuple[str, dict[str, str]]:
    revision = emulator.client("lambda").get_alias(FunctionName=function, Name=alias)["RevisionId"]
    return revision, function_tags(emulator, function)


def assert_invalid_and_untouched(
    aws: Emulator, harness: EngineHarness, name: str, *, expect: str, before: tuple[str, dict[str, str]] | None
) -> None:
    harness.reload()
    for _ in range(3):
        harness.tick(70.0)  # past the slow retry of bad input
    status = harness.status(name)
    assert status.phase is Phase.INVALID
    assert expect in " ".join(status.errors), status.errors
    assert write_calls(aws) == []
    if before is not None:
        assert snapshot(aws, "shop", "live") == before


@pytest.fixture
def shop(aws: Emulator) -> tuple[str, dict[str, str]]:
    """A function with versions 1-2, its alias on 1 and an alarm; the state that must not change."""
    seed_alias(aws, "shop")
    put_hand_alarm(aws.client("cloudwatch"), "shop-errors")
    aws.clear_calls()
    return snapshot(aws, "shop", "live")


def test_missing_function_is_invalid(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    write_document(docs, rollout_document("ghost", function="ghost", version="2", strategy=canary(10, 5)))
    aws.clear_calls()
    assert_invalid_and_untouched(aws, harness, "ghost", expect="ghost", before=None)


def test_missing_version_is_invalid(
    aws: Emulator, docs: Path, harness: EngineHarness, shop: tuple[str, dict[str, str]]
) -> None:
    write_document(docs, rollout_document("shop", function="shop", version="9", strategy=canary(10, 5)))
    assert_invalid_and_untouched(aws, harness, "shop", expect="9", before=shop)


def test_missing_alarm_is_invalid(
    aws: Emulator, docs: Path, harness: EngineHarness, shop: tuple[str, dict[str, str]]
) -> None:
    document = rollout_document("shop", function="shop", version="2", strategy=canary(10, 5), alarms=["nope"])
    write_document(docs, document)
    assert_invalid_and_untouched(aws, harness, "shop", expect="nope", before=shop)


def test_version_with_another_role_is_invalid(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    aws.seed_function("shop", versions=1)
    lam = aws.client("lambda")
    lam.create_alias(FunctionName="shop", Name="live", FunctionVersion="1")
    other = aws.ensure_role("another-role")
    lam.update_function_configuration(FunctionName="shop", Role=other)
    aws.wait_for(lambda: lam.get_function_configuration(FunctionName="shop")["LastUpdateStatus"] == "Successful")
    assert lam.publish_version(FunctionName="shop")["Version"] == "2"
    aws.clear_calls()
    before = snapshot(aws, "shop", "live")
    write_document(docs, rollout_document("shop", function="shop", version="2", strategy=canary(10, 5)))
    assert_invalid_and_untouched(aws, harness, "shop", expect="role", before=before)


def start_shop(aws: Emulator, docs: Path, harness: EngineHarness) -> Path:
    """A rollout of shop 1 -> 2 (10%, 60 s, 50%, 60 s) driven to its first weight; returns its document's path."""
    path = write_document(docs, rollout_document("shop", function="shop", version="2", strategy=canary(10, 60, 50, 60)))
    harness.reload()
    harness.drive(lambda: alias_routing(aws, "shop", "live") == ("1", {"2": 0.1}))
    return path


def test_document_invalid_mid_rollout_holds_it(
    aws: Emulator, docs: Path, harness: EngineHarness, shop: tuple[str, dict[str, str]]
) -> None:
    path = start_shop(aws, docs, harness)
    aws.clear_calls()
    before = snapshot(aws, "shop", "live")

    path.write_text(path.read_text().replace("setWeight: 50", "setWeight: 150"))
    assert_invalid_and_untouched(aws, harness, "shop", expect="setWeight", before=before)
    assert alias_routing(aws, "shop", "live") == ("1", {"2": 0.1})

    # Fixed again: the rollout continues from where it was held.
    path.write_text(path.read_text().replace("setWeight: 150", "setWeight: 50"))
    harness.reload()
    harness.drive(lambda: alias_routing(aws, "shop", "live") == ("1", {"2": 0.5}))


def test_removed_file_mid_rollout_is_orphaned_loudly_and_resumes_when_back(
    aws: Emulator, docs: Path, harness: EngineHarness, shop: tuple[str, dict[str, str]]
) -> None:
    path = start_shop(aws, docs, harness)
    text = path.read_text()
    path.unlink()
    harness.reload()
    # Never silent: the status, the durable record on the function and an Event say so...
    status = harness.engine.status("default/shop")
    assert status is not None and (status.phase, status.reason) == (Phase.ORPHANED, "DocumentRemoved")
    assert "version 1 at 90% + 2 at 10%" in status.message
    harness.tick(1.0)  # the record says so on the function from the next tick on
    assert decode_record("live", function_tags(aws, "shop")).phase is Phase.ORPHANED  # type: ignore[union-attr]
    assert [e.reason for e in harness.sink.events["default/shop"]][-1] == "DocumentRemoved"
    # ... and the alias is left exactly where it was: nobody moves it.
    aws.clear_calls()
    for _ in range(3):
        harness.tick(120.0)
    assert write_calls(aws) == []
    assert alias_routing(aws, "shop", "live") == ("1", {"2": 0.1})

    # The document comes back: managed again, the bake time served in full from the return.
    path.write_text(text)
    harness.reload()
    harness.tick(1.0)
    assert harness.status("shop").phase is Phase.PROGRESSING
    assert "ManagementResumed" in [e.reason for e in harness.sink.events["default/shop"]]
    harness.tick(59.0)
    assert alias_routing(aws, "shop", "live") == ("1", {"2": 0.1})
    harness.drive(lambda: alias_routing(aws, "shop", "live") == ("1", {"2": 0.5}))


def test_removed_file_with_nothing_in_flight_stops_management_quietly(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seed_alias(aws, "shop")
    path = write_document(docs, rollout_document("shop", function="shop", version="1", strategy=canary(10, 60)))
    harness.reload()
    harness.drive(phase_is(harness, "shop", Phase.HEALTHY))
    path.unlink()
    harness.reload()
    aws.clear_calls()
    harness.tick(120.0)
    assert harness.engine.status("default/shop") is None
    assert write_calls(aws) == []
