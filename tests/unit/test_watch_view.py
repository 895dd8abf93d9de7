"""The pure parts of ``get --watch``: the ``--until-done`` verdict and the plain line's change detection."""

from __future__ import annotations

from rich.console import Console

from controller.commands.get import Row, rich_table
from controller.commands.watch import plan_of, verdict
from controller.core.status import record_status as status_from_record
from controller.core.types import HistoryEntry, Phase, Record
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
