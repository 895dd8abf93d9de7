"""Sequential analysis in the pure core (``controller.core.sequential_analysis``), through the simulated shell.

The simulator reads the periods the core says are due and hands over their counts (canary as bad as
stable, 20 times worse, or no traffic): the rules fold them into the record, roll a proven regression
back, and end a timed pause early on a proven "no regression" when ``promoteEarly`` says so.
"""

from __future__ import annotations

import dataclasses

import pytest

from controller.core.decide import decide
from controller.core.reasons import Reason
from controller.core.sequential import Conclusion, Look, evidence, verdict
from controller.core.sequential_analysis import (
    MAX_LOOKS,
    due_periods,
    due_tests,
    fingerprint,
    next_due,
    outlook,
    run_of,
    wake_after,
)
from controller.core.status import evidence_line, record_status
from controller.core.types import AliasRouting, Observed, Phase, Record, SequentialLooks, Verb
from controller.document.model import (
    Analysis,
    BlueGreenStrategy,
    CanaryStrategy,
    Pause,
    SequentialTest,
    SetWeight,
    Step,
)
from tests.unit.simulator import World, api_spec, versions

ERRORS = SequentialTest("errors", period=60.0, publication_delay=30.0)
START = 1_020.0  # a whole minute: the first period of a weight confirmed now is [START, START + 60)
FIRST_DUE = START + 60 + 30  # ... read once published, 30 s after it ends


def world(
    *tests: SequentialTest,
    steps: tuple[Step, ...] = (SetWeight(10), Pause(3600)),
    early: bool = False,
    sequential: str = "same",
) -> World:
    spec = api_spec(CanaryStrategy(steps), analysis=Analysis(sequential=tests or (ERRORS,), promote_early=early))
    w = World(spec=spec, alias=AliasRouting("1"), versions=versions("1", "2"), now=START, sequential=sequential)
    w.tick()
    assert w.alias == AliasRouting("1", "2", 0.1)
    assert w.record is not None and w.record.weight_at == START
    return w


def minutes(w: World, count: int) -> None:
    """Tick once a minute, as the periods become due."""
    for _ in range(count):
        w.now += 60
        w.tick()


# ---- which periods are read -------------------------------------------------------------------------


def test_periods_count_from_the_weight_and_are_read_once_published() -> None:
    w = world()
    record = w.record
    assert record is not None
    assert next_due(ERRORS, record) == FIRST_DUE
    assert due_tests(w.spec, record, FIRST_DUE - 1) == ()
    assert due_periods(ERRORS, record, FIRST_DUE) == (START,)
    assert due_periods(ERRORS, record, FIRST_DUE + 119) == (START, START + 60)
    # A weight confirmed mid-period waits for the next whole period.
    late = dataclasses.replace(record, weight_at=START + 1)
    assert due_periods(ERRORS, late, FIRST_DUE + 59) == () and due_periods(ERRORS, late, FIRST_DUE + 60) == (
        START + 60,
    )
    # A controller that was down for a day catches up over several ticks.
    assert len(due_periods(ERRORS, record, START + 86_400)) == MAX_LOOKS


def test_each_period_is_folded_once_and_the_decision_asks_for_the_next() -> None:
    w = world()
    assert w.tick().requeue_after == pytest.approx(FIRST_DUE - START)
    w.now = FIRST_DUE
    decision = w.tick()
    assert [(name, look.start) for _, name, _, look in w.looked] == [("errors", START)]
    assert w.record is not None and w.record.sequential[0].state.looks == 1
    assert w.record.sequential[0].state.through == START + 60
    assert decision.requeue_after == pytest.approx(60)  # the next period is due a minute later
    # The same looks again (a slow batch, a second decide) change nothing.
    again = decide(w.spec, w.record, w.observe(), w.now)
    assert again.record == w.record and not again.record_changed
    w.now += 59
    w.tick()
    assert len(w.looked) == 1


def test_looks_of_another_version_stable_test_or_weight_are_ignored() -> None:
    w = world()
    record = w.record
    assert record is not None
    look = Look(START, START + 60, 100, 80, 900, 2)
    good = SequentialLooks(fingerprint(ERRORS), "2", "1", (look,))
    observed = Observed(alias_read=True, alias=w.alias, versions=w.versions, looks={"errors": good})
    assert decide(w.spec, record, observed, FIRST_DUE).status.reason == Reason.REGRESSION_DETECTED
    for stale in (
        dataclasses.replace(good, version="3"),
        dataclasses.replace(good, stable="0"),
        dataclasses.replace(good, test="00000000"),  # read for the test as it was declared before
        dataclasses.replace(good, looks=(dataclasses.replace(look, start=START - 60, end=START),)),
    ):
        observed = dataclasses.replace(observed, looks={"errors": stale})
        assert decide(w.spec, record, observed, FIRST_DUE).record.sequential == ()


def test_nothing_is_read_without_partial_traffic() -> None:
    w = world(steps=(SetWeight(10), Pause(60)))
    record = w.record
    assert record is not None
    for other in (
        dataclasses.replace(record, pending=w.writes[-1].action.write),
        dataclasses.replace(record, weight=100),
        dataclasses.replace(record, bypass=True),
        dataclasses.replace(record, canary=None),
    ):
        assert due_tests(w.spec, other, FIRST_DUE) == () and wake_after(w.spec, other, START) is None
    blue_green = dataclasses.replace(w.spec, strategy=BlueGreenStrategy(preview_alias="green"))
    assert due_tests(blue_green, record, FIRST_DUE) == ()


# ---- what the rollout does ----------------------------------------------------------------------------


def test_a_proven_regression_rolls_back_before_the_pause_ends() -> None:
    w = world(sequential="worse")
    w.requests = 1000
    w.now = FIRST_DUE
    decision = w.tick()
    assert w.alias == AliasRouting("1")
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.REGRESSION_DETECTED)
    assert decision.status.message == (
        "regression detected by sequential test errors: canary 40.0% (40/100) vs stable 2.0% (18/900): "
        "regression beyond +20% proven (e-value 10^21.8 >= 100): version 2 rolled back to 1; "
        "`retry` or a spec change starts it again"
    )
    assert any(e.reason == Reason.REGRESSION_DETECTED and e.warning for e in decision.events)
    record = w.record
    assert record is not None and [(f.version, f.reason) for f in record.failed] == [("2", "RegressionDetected")]
    assert (record.history[-1].outcome, record.history[-1].reason) == ("RolledBack", "RegressionDetected")
    assert record.sequential == () and decision.status.evidence == ()
    for _ in range(3):
        w.now += 600
        assert not w.tick().actions  # never retried by itself
    w.ask(Verb.RETRY)
    w.tick()
    assert w.record is not None and w.record.canary == "2" and w.record.sequential == ()  # a fresh test


def test_an_equal_canary_is_not_rolled_back_and_promote_early_ends_the_timed_pause() -> None:
    late, early = world(), world(early=True)
    for w in (late, early):
        w.now = FIRST_DUE
        w.tick()
    while early.alias != AliasRouting("2"):
        for w in (late, early):
            w.now += 60
            w.tick()
        assert early.now < START + 3600, "promoteEarly never ended the pause"
    early.tick()
    assert late.alias == AliasRouting("1", "2", 0.1)  # the same evidence, without promoteEarly: still baking
    ended = next(d for d in early.decisions if any(e.reason == Reason.PROMOTED_EARLY for e in d.events))
    (event,) = [e for e in ended.events if e.reason == Reason.PROMOTED_EARLY]
    assert event.message.startswith("version 2 at 10%: pause ended after ")
    assert "of 3600s (promoteEarly): errors: canary 2.0% (" in event.message
    assert "no regression beyond +20% proven" in event.message
    final = "final step: alias prod to version 2 at 100% (step 3 of 3)"
    assert ended.record.message.startswith(f"{final}; pause ended after ")
    assert ended.record.message.endswith("s of 3600s: no regression proven")
    write = early.writes[-1]
    assert write.record.sequential and all(
        verdict(r.state, settings=r.settings, since=write.record.weight_at).conclusion is Conclusion.NO_REGRESSION
        for r in write.record.sequential
    )
    assert early.record is not None and early.record.phase is Phase.HEALTHY and early.record.sequential == ()
    assert late.record is not None and late.record.phase is Phase.PROGRESSING


def test_promote_early_needs_a_period_at_the_current_weight_and_a_timed_pause() -> None:
    w = world(steps=(SetWeight(10), Pause(3600), SetWeight(50), Pause(3600)), early=True)
    w.now = FIRST_DUE
    while w.alias == AliasRouting("1", "2", 0.1):
        minutes(w, 1)
    assert w.alias == AliasRouting("1", "2", 0.5)
    record = w.record
    assert record is not None and record.weight_at == w.now
    # The evidence is proven already, but not at 50%: the next pause waits for a period at that weight.
    assert (
        verdict(record.sequential[0].state, settings=record.sequential[0].settings).conclusion
        is Conclusion.NO_REGRESSION
    )
    w.now += 60
    assert w.tick().status.reason == Reason.BAKING and w.alias == AliasRouting("1", "2", 0.5)
    minutes(w, 2)
    assert w.alias == AliasRouting("2")
    forever = world(steps=(SetWeight(10), Pause()), early=True)
    minutes(forever, 120)
    assert forever.alias == AliasRouting("1", "2", 0.1) and forever.record is not None
    assert forever.record.reason == Reason.WAITING_FOR_PROMOTE  # an indefinite pause waits for a person


def test_no_data_is_never_a_pass() -> None:
    w = world(early=True, sequential="silent")
    minutes(w, 59)
    assert w.alias == AliasRouting("1", "2", 0.1)
    record = w.record
    assert record is not None and record.sequential[0].state.looks >= 50
    found = evidence(record.sequential[0].state, settings=record.sequential[0].settings)
    assert (found.regression, found.no_regression) == (0.0, 0.0)
    minutes(w, 2)
    assert w.alias == AliasRouting("2")  # the pause ran its nominal time


def test_a_test_whose_declaration_changes_starts_again_and_the_others_keep_their_evidence() -> None:
    other = SequentialTest("latency-errors", failures=ERRORS.failures, period=60.0, publication_delay=30.0)
    w = world(ERRORS, other)
    minutes(w, 3)
    record = w.record
    assert record is not None and [r.state.looks for r in record.sequential] == [2, 2]
    stricter = dataclasses.replace(ERRORS, confidence=0.999)
    w.with_spec(analysis=dataclasses.replace(w.spec.analysis, sequential=(stricter, other)))
    w.tick()
    assert w.record is not None
    # Judged afresh under its new settings, from the first period of the weight; the other one untouched.
    renewed = run_of(w.record, stricter)
    assert renewed is not None and renewed.test == fingerprint(stricter) != record.sequential[0].test
    assert (renewed.settings.confidence, renewed.state.looks) == (0.999, 2)
    assert run_of(w.record, other) == record.sequential[1]
    minutes(w, 1)
    assert [r.state.looks for r in w.record.sequential] == [3, 3]


def test_a_crash_loses_no_evidence() -> None:
    w = world()
    minutes(w, 4)
    record = w.record
    assert record is not None and record.sequential[0].state.looks == 3
    # Another controller, with nothing but the record: the same evidence, the next period next.
    fresh = World(spec=w.spec, alias=w.alias, versions=w.versions, record=record, now=w.now + 60)
    fresh.tick()
    assert fresh.record is not None and fresh.record.sequential[0].state.looks == 4
    assert [look.start for _, _, _, look in fresh.looked] == [START + 180]


# ---- what people see -------------------------------------------------------------------------------


def test_the_status_shows_the_evidence_and_a_reader_of_the_record_sees_the_same() -> None:
    w = world()
    w.now = FIRST_DUE
    decision = w.tick()
    (shown,) = decision.status.evidence
    assert (shown.test, shown.canary_failures, shown.canary_requests, shown.stable_failures, shown.looks) == (
        "errors",
        20,
        1000,
        180,
        1,
    )
    assert shown.conclusion == "Continue" and shown.bound == pytest.approx(2.0)
    line = evidence_line(shown)
    assert line.startswith("sequential errors: canary 2.0% (20/1000) vs stable 2.0% (180/9000), e-values 10^")
    assert line.endswith(" of 10^2")
    assert decision.status.message.endswith("; " + line)
    assert decision.status.message.startswith("version 2 at 10%: baking, ")
    assert w.record is not None and line not in w.record.message  # waiting writes nothing: status only
    read = record_status(w.record)
    assert read.evidence == decision.status.evidence
    assert read.message == f"{w.record.message}; {line}"


def test_plan_says_what_the_next_look_may_do() -> None:
    w = world(early=True)
    record = w.record
    assert record is not None
    (line,) = outlook(w.spec, record, START + 10)
    assert line == (
        "sequential errors: canary - (0/0) vs stable - (0/0): no conclusion yet (e-value 1 for a regression "
        "beyond +20%, 1 for none; bound 100); next look in 80s (period 00:17:00-00:18:00 UTC): a proven "
        "regression rolls back at once; once every test proves none, a timed pause ends early (promoteEarly)"
    )
    assert outlook(w.spec, Record(), START) == ()
