"""Metric analysis and the emergency bypass in the pure core, driven through the simulated shell."""

from __future__ import annotations

import dataclasses

import pytest

from controller.core.decide import decide
from controller.core.metric_analysis import cloudwatch_period, due_metrics, fold, judge, next_due, window
from controller.core.reasons import Reason
from controller.core.types import AliasRouting, Measurement, MetricState, Observed, Phase, Verb, Verdict
from controller.document.model import (
    Analysis,
    CanaryStrategy,
    CompareToStable,
    Metric,
    MetricQuery,
    Pause,
    SetWeight,
    Threshold,
)
from tests.unit.simulator import World, api_spec, versions

ERRORS = Metric("error-rate", (MetricQuery("m", "Errors", "Sum"),), threshold=Threshold(max=5.0))
START = 1_020.0  # a whole minute: the first measurement of a weight confirmed now is due at START + 60


def world(*metrics: Metric, steps: tuple[SetWeight | Pause, ...] = (SetWeight(10), Pause(60)), **spec: object) -> World:
    rollout = api_spec(
        CanaryStrategy(steps),
        analysis=Analysis(metrics=metrics or (ERRORS,)),
    )
    rollout = dataclasses.replace(rollout, **spec)  # type: ignore[arg-type]
    return World(spec=rollout, alias=AliasRouting("1"), versions=versions("1", "2"), now=START)


def at_first_weight(w: World) -> None:
    w.tick()
    assert w.alias == AliasRouting("1", "2", 0.1)
    assert w.record is not None and w.record.weight_at == START


# ---- when measurements are taken ----------------------------------------------------------------


def test_window_and_periods() -> None:
    assert window(1_000.0, 60) == (900.0, 960.0)
    assert window(960.0, 60) == (900.0, 960.0)
    assert [cloudwatch_period(s) for s in (0.2, 1, 4, 5, 29, 30, 59, 60, 119, 120, 300)] == [
        1,
        1,
        1,
        5,
        10,
        30,
        30,
        60,
        60,
        120,
        300,
    ]


def test_nothing_is_measured_before_the_new_version_has_traffic() -> None:
    w = world()
    assert due_metrics(w.spec, None, START) == ()
    at_first_weight(w)
    assert w.measured == []
    assert w.record is not None
    # The first measurement covers the first whole period after the weight: [START, START + 60).
    assert next_due(ERRORS, w.record) == START + 60
    w.now = START + 59
    w.tick()
    assert w.measured == []
    w.now = START + 60
    w.tick()
    assert w.measured == [(START + 60, "error-rate", "2", Verdict.SUCCESSFUL, START)]


def test_a_weight_confirmed_mid_period_waits_for_the_next_whole_period() -> None:
    w = world()
    w.now = START + 10
    at_first_weight_late = w.tick()
    assert at_first_weight_late.requeue_after is not None
    assert w.record is not None and next_due(ERRORS, w.record) == START + 120


def test_the_decision_asks_to_be_woken_for_the_next_measurement() -> None:
    w = world(steps=(SetWeight(10), Pause(3600)))
    at_first_weight(w)
    w.now = START + 1
    assert w.tick().requeue_after == pytest.approx(59)
    w.now = START + 60
    assert w.tick().requeue_after == pytest.approx(60)  # every interval from then on


def test_interval_is_scaled_with_the_plan() -> None:
    w = world(dataclasses.replace(ERRORS, period=60, interval=60))
    w.time_scale = 0.1
    at_first_weight(w)
    assert w.record is not None
    # 60 s scaled by 0.1 is 6 s; CloudWatch's nearest period not longer than that is 5 s.
    assert next_due(w.spec.analysis.metrics[0], w.record, time_scale=0.1) == START + 5
    w.now = START + 5
    w.tick()
    assert w.record is not None and next_due(w.spec.analysis.metrics[0], w.record, time_scale=0.1) == START + 11


# ---- the gate ------------------------------------------------------------------------------------


def test_a_step_waits_for_a_passing_measurement_after_its_weight() -> None:
    w = world(steps=(SetWeight(10), Pause(30)))
    at_first_weight(w)
    w.now = START + 30  # the pause has run its time, but nothing was measured yet
    decision = w.tick()
    assert not decision.actions and w.alias == AliasRouting("1", "2", 0.1)
    assert (decision.status.phase, decision.status.reason) == (Phase.PROGRESSING, Reason.WAITING_FOR_ANALYSIS)
    assert "error-rate: first measurement in 30s" in decision.status.message
    w.now = START + 60
    w.tick()
    assert w.alias == AliasRouting("2")


def test_no_data_never_ends_a_pause_and_goes_inconclusive_past_the_limit() -> None:
    w = world(dataclasses.replace(ERRORS, inconclusive_limit=2), steps=(SetWeight(10), Pause(30)))
    w.metric_verdict = Verdict.INCONCLUSIVE
    at_first_weight(w)
    for minute in (1, 2, 3):
        w.now = START + 60 * minute
        decision = w.tick()
        assert w.alias == AliasRouting("1", "2", 0.1)
    assert (decision.status.phase, decision.status.reason) == (Phase.PAUSED, Reason.ANALYSIS_INCONCLUSIVE)
    assert "error-rate" in decision.status.message and "`promote`" in decision.status.message
    assert any(e.reason == Reason.ANALYSIS_INCONCLUSIVE and e.warning for e in decision.events)
    # Data coming back does not resume it by itself: a person decides.
    w.metric_verdict = Verdict.SUCCESSFUL
    for minute in range(4, 10):
        w.now = START + 60 * minute
        assert w.tick().status.reason == Reason.ANALYSIS_INCONCLUSIVE
    assert w.alias == AliasRouting("1", "2", 0.1)
    w.ask(Verb.PROMOTE, by="alice")
    decision = w.tick()
    assert w.alias == AliasRouting("2")
    assert w.record is not None and (w.record.history[-1].reason, w.record.history[-1].by) == ("promote", "alice")


def test_a_failure_while_inconclusive_still_rolls_back() -> None:
    w = world(dataclasses.replace(ERRORS, inconclusive_limit=0), steps=(SetWeight(10), Pause(30)))
    w.metric_verdict = Verdict.INCONCLUSIVE
    at_first_weight(w)
    w.now = START + 60
    assert w.tick().status.reason == Reason.ANALYSIS_INCONCLUSIVE
    w.metric_verdict = Verdict.FAILED
    w.now = START + 120
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.ANALYSIS_FAILED)


def test_abort_of_an_inconclusive_analysis_rolls_back() -> None:
    w = world(dataclasses.replace(ERRORS, inconclusive_limit=0))
    w.metric_verdict = Verdict.INCONCLUSIVE
    at_first_weight(w)
    w.now = START + 60
    w.tick()
    w.ask(Verb.ABORT)
    assert w.tick().status.reason == Reason.ABORTED and w.alias == AliasRouting("1")


# ---- failures ------------------------------------------------------------------------------------


def test_a_failed_metric_rolls_back_naming_the_metric_value_and_threshold() -> None:
    w = world()
    w.metric_verdict = Verdict.FAILED
    at_first_weight(w)
    w.now = START + 60
    decision = w.tick()
    assert w.alias == AliasRouting("1")
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.ANALYSIS_FAILED)
    assert "metric error-rate = 1e+09: 1e+09 is above max 5" in decision.status.message
    assert any(e.reason == Reason.ANALYSIS_FAILED and e.warning for e in decision.events)
    assert w.record is not None and [(f.version, f.reason) for f in w.record.failed] == [("2", "AnalysisFailed")]
    assert (w.record.history[-1].outcome, w.record.history[-1].reason) == ("RolledBack", "AnalysisFailed")
    assert w.record.metrics == () and w.record.weight_at is None
    for _ in range(3):
        w.now += 600
        assert not w.tick().actions  # never retried by itself


def test_failure_limit_counts_consecutive_failures_only() -> None:
    w = world(dataclasses.replace(ERRORS, failure_limit=2), steps=(SetWeight(10), Pause(600)))
    at_first_weight(w)
    for minute, verdict in enumerate((Verdict.FAILED, Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.INCONCLUSIVE), 1):
        w.metric_verdict = verdict
        w.now = START + 60 * minute
        assert w.tick().status.phase is not Phase.ROLLED_BACK
    w.metric_verdict = Verdict.FAILED
    w.now = START + 300
    assert w.tick().status.reason == Reason.ANALYSIS_FAILED  # failed, no data, failed: two in a row


def test_measurements_are_folded_once_and_only_for_the_weight_in_flight() -> None:
    w = world(steps=(SetWeight(10), Pause(600)))
    at_first_weight(w)
    record = w.record
    assert record is not None
    bad = Measurement("2", START + 60, START, value=99.0)
    observed = Observed(alias_read=True, alias=w.alias, versions=w.versions, measurements={"error-rate": bad})
    once = decide(w.spec, record, observed, START + 60)
    assert once.status.reason == Reason.ANALYSIS_FAILED
    for stale in (
        dataclasses.replace(bad, version="3"),  # another version
        dataclasses.replace(bad, window_start=START - 60),  # a period from before the weight
    ):
        observed = dataclasses.replace(observed, measurements={"error-rate": stale})
        assert decide(w.spec, record, observed, START + 60).record.metrics == ()
    w2 = world(dataclasses.replace(ERRORS, failure_limit=2), steps=(SetWeight(10), Pause(600)))
    at_first_weight(w2)
    assert w2.record is not None
    observed = dataclasses.replace(observed, measurements={"error-rate": bad})
    first = decide(w2.spec, w2.record, observed, START + 60).record
    assert first.metrics[0].failures == 1
    assert decide(w2.spec, first, observed, START + 60).record.metrics == first.metrics  # same one: not again


# ---- judging -------------------------------------------------------------------------------------


def m(value: float | None, stable: float | None = None, samples: float | None = None) -> Measurement:
    return Measurement("2", 1.0, 0.0, value=value, stable=stable, samples=samples)


def test_judge_thresholds_samples_and_stable_comparison() -> None:
    both = dataclasses.replace(ERRORS, threshold=Threshold(max=5, min=1))
    assert [judge(both, m(v)) for v in (0.5, 1, 5, 5.5)] == [
        Verdict.FAILED,
        Verdict.SUCCESSFUL,
        Verdict.SUCCESSFUL,
        Verdict.FAILED,
    ]
    assert judge(both, m(None)) is Verdict.INCONCLUSIVE
    assert judge(both, m(float("nan"))) is Verdict.INCONCLUSIVE
    sampled = dataclasses.replace(ERRORS, min_samples=10)
    assert judge(sampled, m(100.0, samples=9)) is Verdict.INCONCLUSIVE  # too few: not judged at all
    assert judge(sampled, m(100.0, samples=None)) is Verdict.INCONCLUSIVE
    assert judge(sampled, m(1.0, samples=10)) is Verdict.SUCCESSFUL
    ratio = dataclasses.replace(ERRORS, threshold=None, compare_to_stable=CompareToStable(max_ratio=1.5))
    assert judge(ratio, m(150, stable=100)) is Verdict.SUCCESSFUL
    assert judge(ratio, m(151, stable=100)) is Verdict.FAILED
    assert judge(ratio, m(150, stable=None)) is Verdict.INCONCLUSIVE  # no baseline: no data, never a pass
    increase = dataclasses.replace(ERRORS, threshold=None, compare_to_stable=CompareToStable(max_increase=2))
    assert [judge(increase, m(v, stable=1)) for v in (3, 3.5)] == [Verdict.SUCCESSFUL, Verdict.FAILED]


def test_fold_keeps_failures_across_no_data_and_resets_on_a_pass() -> None:
    state = fold(ERRORS, None, m(9))
    assert (state.outcome, state.failures, state.no_data, state.value) == (Verdict.FAILED, 1, 0, 9)
    state = fold(ERRORS, state, m(None))
    assert (state.outcome, state.failures, state.no_data, state.value) == (Verdict.INCONCLUSIVE, 1, 1, None)
    state = fold(ERRORS, state, m(1))
    assert state == MetricState("error-rate", Verdict.SUCCESSFUL, 0, 0, 1.0, None, 1.0)


# ---- promote --full and the emergency bypass -----------------------------------------------------


def test_promote_full_still_respects_a_firing_alarm() -> None:
    w = world(analysis=Analysis(alarms=("old-errors",), metrics=(ERRORS,)))
    at_first_weight(w)
    w.alarms = frozenset({"old-errors"})
    w.ask(Verb.PROMOTE_FULL)
    decision = w.tick()
    assert w.alias == AliasRouting("1") and decision.status.reason == Reason.ALARM_FIRED


def test_bypass_finishes_while_an_alarm_fires_and_analysis_fails() -> None:
    w = world(analysis=Analysis(alarms=("old-errors",), metrics=(ERRORS,)))
    at_first_weight(w)
    w.alarms = frozenset({"old-errors"})
    w.metric_verdict = Verdict.FAILED
    w.now = START + 60
    w.ask(Verb.PROMOTE_BYPASS, by="arn:aws:iam::1:user/oncall")
    decision = w.tick()
    assert w.alias == AliasRouting("2")
    assert decision.status.reason == Reason.EMERGENCY_BYPASS
    assert any(e.reason == Reason.EMERGENCY_BYPASS and e.warning for e in decision.events)
    w.tick()
    assert w.record is not None and w.record.phase is Phase.HEALTHY and w.record.stable == "2"
    entry = w.record.history[-1]
    assert (entry.version, entry.outcome, entry.reason, entry.by) == (
        "2",
        "Promoted",
        "EmergencyBypass",
        "arn:aws:iam::1:user/oncall",
    )
    assert not w.record.bypass and len(w.measured) == 1  # taken with the request, not acted on, none after


def test_bypass_deploys_a_version_rolled_back_because_of_the_old_versions_alarm() -> None:
    w = world(analysis=Analysis(alarms=("alias-errors",)))
    w.alarms = frozenset({"alias-errors"})
    decision = w.tick()
    assert decision.status.reason == Reason.ALARM_FIRED and w.alias == AliasRouting("1")
    w.ask(Verb.PROMOTE_BYPASS, by="oncall")
    w.now += 10
    w.settle()
    assert w.alias == AliasRouting("2")
    assert w.record is not None and w.record.phase is Phase.HEALTHY and w.record.failed == ()
    assert (w.record.history[-1].reason, w.record.history[-1].by) == ("EmergencyBypass", "oncall")
    w.now += 600
    assert not w.tick().actions  # and it stays: the alarm no longer concerns a rollout in flight


def test_bypass_without_anything_to_promote_is_noted() -> None:
    w = world()
    w.with_spec(version="1")
    w.tick()
    w.ask(Verb.PROMOTE_BYPASS)
    decision = w.tick()
    assert not decision.actions and "promote-bypass ignored: no rollout in progress" in decision.status.message
