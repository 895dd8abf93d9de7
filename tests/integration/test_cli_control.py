"""The control verbs in GitOps mode, against the strict emulator with a real Engine.

Each verb leaves a request tag (caller from STS) that a real Engine, ticked with a fake clock, acts
on within one tick; what it did is checked on the alias and in the durable record, including the
history entry naming the caller. Also: a verb written while no controller runs, an unknown or
ambiguous name, and ``--wait``.
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.commands.control import control
from controller.core.codec import decode_record, request_key
from controller.core.types import HistoryEntry, Phase, Record
from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    EngineHarness,
    alias_routing,
    canary,
    cli_env,
    function_tags,
    rollout_document,
    seed_alias,
    write_document,
)

FUNCTION, ALIAS = "orders", "live"


@pytest.fixture
def source(aws: Emulator, tmp_path: Path) -> Path:
    """orders:live on version 1, a document moving it to 2: 10%, wait for promote, 50%, wait, 100%."""
    seed_alias(aws, FUNCTION, versions=3, alias=ALIAS)
    write_document(
        tmp_path, rollout_document("orders", function=FUNCTION, version="2", strategy=canary(10, None, 50, None))
    )
    return tmp_path


@pytest.fixture
def harness(aws: Emulator, source: Path) -> Iterator[EngineHarness]:
    with EngineHarness(aws, source) as h:
        yield h


def caller(aws: Emulator) -> str:
    return str(aws.client("sts").get_caller_identity()["Arn"])


def record(aws: Emulator) -> Record:
    found = decode_record(ALIAS, function_tags(aws, FUNCTION))
    assert found is not None
    return found


def verb(h: EngineHarness, name: str, *, full: bool = False, name_of: str = "orders") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = h.run(control(h.aws, verb=name, name=name_of, full=full, out=out, err=err))
    return code, out.getvalue(), err.getvalue()


def last_entry(aws: Emulator) -> tuple[str, str, str, str]:
    entry: HistoryEntry = record(aws).history[-1]
    return entry.version, entry.outcome, entry.reason, entry.by


def test_each_verb_is_acted_on_within_one_tick_and_recorded_with_the_caller(
    aws: Emulator, harness: EngineHarness
) -> None:
    h, me = harness, caller(aws)
    h.tick()
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1}) and h.status("orders").phase is Phase.PAUSED

    code, out, _ = verb(h, "pause")
    assert code == 0 and f"pause requested for default/orders ({FUNCTION}:{ALIAS}) by {me}" in out
    assert request_key(ALIAS) in function_tags(aws, FUNCTION)  # waiting for the controller
    h.tick(1)
    assert record(aws).paused_by_request and h.status("orders").reason == "PausedByRequest"
    assert last_entry(aws) == ("2", "Requested", "pause", me) and record(aws).history[-1].at == h.clock.now
    assert request_key(ALIAS) not in function_tags(aws, FUNCTION)  # handled, then removed

    assert verb(h, "resume")[0] == 0
    h.tick(1)
    assert not record(aws).paused_by_request and last_entry(aws) == ("2", "Requested", "resume", me)

    assert verb(h, "promote")[0] == 0
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.5})
    assert last_entry(aws) == ("2", "Requested", "promote", me)

    code, out, _ = verb(h, "promote", full=True)
    assert code == 0 and "promote-full requested" in out
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
    assert last_entry(aws) == ("2", "Promoted", "PromoteFull", me)
    h.tick(1)
    assert h.status("orders").phase is Phase.HEALTHY

    assert verb(h, "undo")[0] == 0
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})
    assert h.status("orders").phase is Phase.ROLLED_BACK and last_entry(aws) == ("2", "Undone", "Undone", me)
    h.tick(60)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})  # an undone version stays out

    assert verb(h, "retry")[0] == 0
    h.tick(1)
    assert last_entry(aws) == ("2", "Requested", "retry", me)
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1})  # started again

    assert verb(h, "abort")[0] == 0
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})
    assert h.status("orders").phase is Phase.ROLLED_BACK and h.status("orders").reason == "Aborted"
    assert last_entry(aws) == ("2", "Aborted", "Aborted", me)
    sts_calls = [c for c in aws.calls() if c.operation == "GetCallerIdentity"]
    assert len(sts_calls) == 8  # one per verb: the caller is never taken from a flag


def test_a_verb_issued_while_the_controller_is_down_is_acted_on_when_it_starts(aws: Emulator, source: Path) -> None:
    first = EngineHarness(aws, source)
    first.tick()
    first.close()
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1})

    second = EngineHarness(aws, source)  # a new controller, nothing in memory
    try:
        code, _, _ = verb(second, "abort")  # written before it ever ticks
        assert code == 0 and alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1})
        second.tick(30)
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})
        assert second.status("orders").phase is Phase.ROLLED_BACK
        assert last_entry(aws) == ("2", "Aborted", "Aborted", caller(aws))
        assert request_key(ALIAS) not in function_tags(aws, FUNCTION)
    finally:
        second.close()


def test_an_unknown_rollout_name_is_a_clear_error_and_writes_nothing(aws: Emulator, harness: EngineHarness) -> None:
    harness.tick()
    aws.clear_calls()
    done = subprocess.run(
        [*CLI, "abort", "nobody", "--log-format", "text"], env=cli_env(aws), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "rollout 'nobody' not found" in done.stderr
    assert not [c for c in aws.calls() if c.operation == "TagResource"]


def test_an_ambiguous_name_lists_the_candidates(aws: Emulator, source: Path) -> None:
    seed_alias(aws, "billing", alias=ALIAS)
    other = rollout_document("orders", function="billing", version="2", strategy=canary(10, None), namespace="team-b")
    write_document(source, other, "other.yaml")
    h = EngineHarness(aws, source)
    try:
        h.tick()
        code, _, err = verb(h, "abort")
        assert code == 1
        assert "ambiguous" in err and "default/orders (orders:live)" in err and "team-b/orders (billing:live)" in err
        assert verb(h, "abort", name_of="team-b/orders")[0] == 0
        h.tick(1)
        assert alias_routing(aws, "billing", ALIAS) == ("1", {})
        assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.1})  # the other one untouched
    finally:
        h.close()


def test_wait_prints_the_outcome_once_the_controller_handled_it(aws: Emulator, harness: EngineHarness) -> None:
    h = harness
    h.tick()
    out, err = io.StringIO(), io.StringIO()

    async def scenario() -> int:
        waiting = asyncio.create_task(
            control(h.aws, verb="abort", name="orders", wait=True, poll=0.02, timeout=10, out=out, err=err)
        )
        # The controller's next tick comes once the request is there.
        while request_key(ALIAS) not in function_tags(aws, FUNCTION):
            await asyncio.sleep(0.01)
        assert not waiting.done()
        h.clock.advance(1)
        await h.engine.tick()
        return await waiting

    assert h.run(scenario()) == 0, err.getvalue()
    assert "default/orders: RolledBack (Aborted): aborted by" in out.getvalue()


def test_wait_times_out_without_a_controller(aws: Emulator, harness: EngineHarness) -> None:
    harness.tick()
    out, err = io.StringIO(), io.StringIO()
    code = harness.run(
        control(harness.aws, verb="pause", name="orders", wait=True, poll=0.02, timeout=0.2, out=out, err=err)
    )
    assert code == 1 and "timed out after 0.2s" in err.getvalue()
    assert request_key(ALIAS) in function_tags(aws, FUNCTION)  # still there for when it starts


def test_promote_full_skip_analysis_is_the_emergency_bypass(aws: Emulator, harness: EngineHarness) -> None:
    h, me = harness, caller(aws)
    h.tick()
    h.tick(1)
    out, err = io.StringIO(), io.StringIO()
    assert h.run(control(h.aws, verb="promote", name="orders", skip_analysis=True, out=out, err=err)) == 2
    assert "--skip-analysis goes with --full" in err.getvalue()
    assert request_key(ALIAS) not in function_tags(aws, FUNCTION)  # a usage error leaves nothing
    out = io.StringIO()
    code = h.run(control(h.aws, verb="promote", name="orders", full=True, skip_analysis=True, out=out, err=err))
    assert code == 0 and "promote-bypass requested" in out.getvalue()
    h.tick(1)
    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
    assert last_entry(aws) == ("2", "Promoted", "EmergencyBypass", me)
