"""The pure parts of ``get --watch``: the ``--until-done`` verdict, the plain line's change detection, and the
sequential tests' evidence as the screen, the line and ``get -o json`` show it from a record."""

from __future__ import annotations

import json

from rich.console import Console

from controller.commands.get import Row, render, rich_table, row_from_record
from controller.commands.watch import plan_of, verdict
from controller.core.sequential import Look, SequentialSettings, SequentialState, fold
from controller.core.status import record_status as status_from_record
from controller.core.types import HistoryEntry, Phase, Record, SequentialRun
from controller.observability import view
from controller.observability.view import Snapshot, line

FUNCTION, ALIAS = "orders", "live"


def test_verdict_waits_for_the_desired_version() -> None:
    old_healthy = status_from_record(Record(phase=Phase.HEALTHY, stable="1"), steps=4)
    assert verdict(old_healthy, desired="2") is None and verdict(old_healthy, desired=None) == 0
    assert verdict(status_from_record(Record(phase=Phase.HEALTHY, stable="2"), steps=4), desired="2") == 0
    earlier = HistoryEntry("1", "RolledBack", "AlarmFired", 0.0)
    failed_before = status_from_record(Record(phase=Phase.ROLLED_BACK, stable="0", history=(earlier,)), steps=4)
    assert verdict(failed_before, desired="2") is None  # an earlier attempt; the new one has not started
    this_one = (earlier, HistoryEntry("2", "Degraded", "ProgressDeadlineExceeded", 1.0))
    assert verdict(status_from_record(Record(phase=Phase.DEGRADED, history=this_one), steps=4), desired="2") == 1
    progressing = status_from_record(Record(phase=Phase.PROGRESSING, stable="1", canary="2", weight=10), steps=4)
    assert verdict(progressing, desired="2") is None
    assert plan_of(None).steps == 0


def test_plain_line_changes_only_when_the_rollout_does() -> None:
    status = status_from_record(
        Record(phase=Phase.PROGRESSING, stable="1", canary="2", weight=10, step_index=1, step_started_at=100.0),
        steps=4,
    )
    first = Snapshot(name="default/orders", function=FUNCTION, alias=ALIAS, status=status, now=101.0, pause=5.0)
    later = Snapshot(name="default/orders", function=FUNCTION, alias=ALIAS, status=status, now=103.0, pause=5.0)
    assert line(first) != line(later) and "4s left of 5s" in line(first)
    assert line(first, countdown=False) == line(later, countdown=False)
    assert "stable 1: 90% | canary 2: 10%" in line(first) and "step 2/4" in line(first)


def test_the_get_table_on_a_terminal_has_every_column_and_row() -> None:
    rows = [
        Row(
            name="default/orders",
            function=FUNCTION,
            alias=ALIAS,
            phase="Progressing",
            stable="1",
            canary="2",
            weight=10,
        ),
        Row(name="default/ghost", function="ghost", alias=ALIAS, phase="Invalid", errors=("function ghost not found",)),
    ]
    console = Console(record=True, width=160, color_system=None)
    console.print(rich_table(rows))
    text = console.export_text()
    assert all(column in text for column in ("NAME", "PHASE", "WEIGHT", "MESSAGE"))
    assert "default/orders" in text and "10%" in text and "function ghost not found" in text


def record_with_evidence() -> Record:
    """A rollout at 10% whose sequential test folded two periods (the counts of the issue's example)."""
    settings = SequentialSettings()
    state = SequentialState("errors")
    for start, look in ((60.0, (400, 5, 2000, 25)), (120.0, (600, 7, 3000, 25))):
        state = fold(state, Look(start, start + 60, *look), settings=settings)
    return Record(
        phase=Phase.PROGRESSING,
        stable="1",
        canary="2",
        weight=10,
        step_index=1,
        step_started_at=30.0,
        weight_at=30.0,
        message="version 2 at 10%: baking for 600s (step 2 of 4)",
        sequential=(SequentialRun("0123abcd", state, settings),),
    )


def test_the_evidence_is_shown_from_the_record_alone() -> None:
    status = status_from_record(record_with_evidence(), steps=4)
    (evidence,) = status.evidence
    assert (evidence.canary_failures, evidence.canary_requests, evidence.stable_failures, evidence.looks) == (
        12,
        1000,
        50,
        2,
    )
    text = (
        "sequential errors: canary 1.2% (12/1000) vs stable 1.0% (50/5000), "
        f"e-values 10^{evidence.regression:.1f} / 10^{evidence.no_regression:.1f} of 10^2"
    )
    assert status.message == f"version 2 at 10%: baking for 600s (step 2 of 4); {text}"
    snapshot = Snapshot(name="default/orders", function=FUNCTION, alias=ALIAS, status=status, now=40.0, pause=600.0)
    assert line(snapshot).endswith(text) and line(snapshot, countdown=False).endswith(text)
    console = Console(record=True, width=200, color_system=None)
    console.print(view.render(snapshot))
    screen = console.export_text()
    assert "evidence" in screen and "errors: canary 1.2% (12/1000) vs stable 1.0% (50/5000)" in screen
    assert "Continue" in screen and screen.count("canary 1.2%") == 1  # the message row leaves it out
    assert "version 2 at 10%: baking for 600s (step 2 of 4)" in screen
    row = row_from_record(Row(name="default/orders", function=FUNCTION, alias=ALIAS, phase=""), record_with_evidence())
    (shown,) = json.loads(render([row], "json"))[0]["evidence"]
    assert shown == {
        "test": "errors",
        "canary": {"failures": 12, "requests": 1000},
        "stable": {"failures": 50, "requests": 5000},
        "looks": 2,
        "regression": round(evidence.regression, 3),
        "noRegression": round(evidence.no_regression, 3),
        "bound": 2.0,
        "conclusion": "Continue",
    }
