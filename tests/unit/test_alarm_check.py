"""The cross-check of alarm events against polls: what counts as a mismatch, and what cannot be told."""

from __future__ import annotations

import logging

import pytest

from controller.analysis.alarm_check import SKEW, CrossCheck, Mismatch

T0 = 1_000_000.0
TOLERANCE = 60.0


def check() -> tuple[CrossCheck, list[Mismatch]]:
    found: list[Mismatch] = []
    checker = CrossCheck(tolerance=TOLERANCE, on_mismatch=found.append)
    checker.consuming(T0 - 100)
    checker.polled(started=T0 - 50, firing=frozenset(), transitions={}, covered_from=T0 - 80)
    return checker, found


def kinds(found: list[Mismatch]) -> list[tuple[str, str, float]]:
    return [(m.kind.value, m.alarm, m.at) for m in found]


def test_an_event_the_history_confirms_is_no_mismatch_even_by_a_later_transition() -> None:
    checker, found = check()
    checker.event("errors", T0)  # ALARM at T0 ...
    checker.event("errors", T0 + 0.2)  # ... and OK again at T0 + 0.2
    checker.polled(started=T0 + 5, firing=frozenset(), transitions={"errors": T0 + 0.2})  # latest item only
    checker.polled(started=T0 + 100, firing=frozenset(), transitions={})
    assert found == []


def test_an_event_a_poll_saw_in_alarm_is_no_mismatch() -> None:
    checker, found = check()
    checker.polled(started=T0 + 1, firing=frozenset({"errors"}), transitions={})
    checker.event("errors", T0)  # arrived after that poll: already agreed with
    checker.event("latency", T0)
    checker.polled(started=T0 + 6, firing=frozenset({"latency"}), transitions=None)  # DescribeAlarms alone
    checker.polled(started=T0 + 100, firing=frozenset(), transitions={})
    assert found == []


def test_an_event_no_poll_saw_within_the_tolerance_is_a_mismatch_once(caplog: pytest.LogCaptureFixture) -> None:
    checker, found = check()
    checker.event("errors", T0)
    checker.polled(started=T0 + 5, firing=frozenset(), transitions={})
    checker.polled(started=T0 + TOLERANCE - 1, firing=frozenset(), transitions={})
    assert found == []  # not yet: the history may lag
    with caplog.at_level(logging.WARNING):
        checker.polled(started=T0 + TOLERANCE, firing=frozenset(), transitions={})
        checker.polled(started=T0 + 2 * TOLERANCE, firing=frozenset(), transitions={})
    assert kinds(found) == [("event_only", "errors", T0)]
    assert [r.getMessage() for r in caplog.records] == [
        "alarm errors: an alarm event said it was in ALARM at 1970-01-12T13:46:40.000Z, and no poll saw it "
        "within 60 s (neither DescribeAlarms nor the alarm history); was the message CloudWatch's?"
    ]


def test_an_event_no_history_read_looked_at_cannot_be_told() -> None:
    checker, found = check()
    checker.event("errors", T0 - 500)  # older than the first history read: a message queued while we were down
    checker.event("latency", T0)
    checker.polled(started=T0 + 200, firing=frozenset(), transitions=None)  # the history fails from here on
    checker.polled(started=T0 + 300, firing=frozenset(), transitions=None)
    assert found == []


def test_a_transition_no_event_brought_within_the_tolerance_is_a_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    checker, found = check()
    checker.polled(started=T0 + 5, firing=frozenset(), transitions={"errors": T0, "latency": T0, "slow": T0})
    checker.event("latency", T0 + SKEW / 2)  # the same transition, stamped a little apart
    checker.event("slow", T0 + TOLERANCE - 1)  # late, but within the tolerance
    with caplog.at_level(logging.WARNING):
        checker.polled(started=T0 + TOLERANCE, firing=frozenset(), transitions={})
    assert kinds(found) == [("poll_only", "errors", T0)]
    assert "check the EventBridge rule's pattern and target, and the queue's policy" in caplog.records[0].getMessage()


def test_nothing_is_owed_by_events_while_the_consumer_is_not_consuming() -> None:
    found: list[Mismatch] = []
    checker = CrossCheck(tolerance=TOLERANCE, on_mismatch=found.append)
    checker.polled(started=T0, firing=frozenset(), transitions={"before": T0 - 10}, covered_from=T0 - 30)
    checker.consuming(T0 + 1)
    checker.polled(started=T0 + 5, firing=frozenset(), transitions={"before": T0 - 10, "during": T0 + 2})
    checker.consuming(None)  # degraded: whatever was owed is not any more
    checker.polled(started=T0 + 10, firing=frozenset(), transitions={"after": T0 + 8})
    checker.consuming(T0 + 20)
    checker.polled(started=T0 + 200, firing=frozenset(), transitions={})
    assert found == []
