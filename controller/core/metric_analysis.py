"""Metric analysis in the core: when a metric must be measured, what a measurement means, and what
the rollout does about it.

``spec.analysis.metrics`` are CloudWatch queries the controller evaluates itself, per version (the
``ExecutedVersion`` dimension), so an alias-level alarm already firing because of the OLD version
does not block deploying the fix. The core never reads CloudWatch: it says which metrics are due
(``due_metrics``, a pure function the shell calls before its one batched ``GetMetricData`` per tick),
the shell hands the results back in ``Observed.measurements``, and the rules here fold them into the
record and act on them:

- **measured while the new version has traffic** (a weight plan between its first weight and 100%,
  nothing pending): each metric every ``interval`` of the plan's scaled time. The first measurement
  of a weight covers the first whole ``period`` that begins after the weight was confirmed
  (``record.weight_at``), so no measurement of a weight ever contains traffic from before it.
- **a step never advances on missing data**: the plan moves past a weight only when every metric's
  latest measurement, taken after that weight was applied, passed (``gate``). A pause that has run
  its time waits for that measurement (reason ``WaitingForAnalysis``).
- **failed** (``failureLimit`` consecutive failed measurements): rolled back like an alarm, phase
  RolledBack, reason ``AnalysisFailed``, the message names the metric, the value and the threshold,
  the version marked failed.
- **no data** (no datapoint, fewer Invocations than ``minSamples``, or no stable baseline to compare
  with) is its own outcome: tolerated ``inconclusiveLimit`` times in a row, then the analysis is
  Inconclusive and the rollout pauses (``AnalysisInconclusive``) until ``promote`` (accepts it) or
  ``abort``. Never a silent pass. Measuring goes on while paused: a failure still rolls back.

Measurements are compact in the record (``MetricState``: consecutive failures / no-data counts, the
last value, baseline and time) and belong to the attempt in flight, like hook answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

from controller.core.context import Ctx, canary_in_flight, finish, withdraw_decision
from controller.core.reasons import Outcome, Reason
from controller.core.types import Decision, Event, Measurement, MetricState, Phase, Record, UpdateAlias, Verdict
from controller.document.model import Metric, RolloutSpec

# CloudWatch accepts these periods below a minute (high resolution); from 60 s on, multiples of 60.
_SHORT_PERIODS = (1, 5, 10, 30)
# A decision never asks to be woken sooner than this for a measurement (no busy loop when the shell
# did not measure, e.g. ``plan``).
_MIN_WAKE = 0.5


def cloudwatch_period(seconds: float) -> int:
    """The longest period CloudWatch accepts that is not longer than ``seconds`` (at least 1)."""
    if seconds >= 60:
        return int(seconds // 60) * 60
    return max((p for p in _SHORT_PERIODS if p <= seconds), default=1)


def period_of(metric: Metric, *, time_scale: float = 1.0) -> int:
    """The CloudWatch ``Period`` of one measurement of ``metric``, in the plan's scaled time."""
    return cloudwatch_period(metric.period * time_scale)


def window(now: float, period: int) -> tuple[float, float]:
    """The period a measurement taken at ``now`` covers: the last whole one, aligned as CloudWatch
    aligns its datapoints, so every query of a tick with the same period reads the same bucket."""
    end = math.floor(now / period) * period
    return float(end - period), float(end)


def state_of(record: Record, name: str) -> MetricState | None:
    return next((state for state in record.metrics if state.name == name), None)


def measuring(spec: RolloutSpec, record: Record) -> bool:
    """The new version has traffic from a weight plan and nothing is in flight: metrics are measured."""
    return bool(spec.analysis.metrics) and canary_in_flight(spec, record)


def next_due(metric: Metric, record: Record, *, time_scale: float = 1.0) -> float:
    """When ``metric`` is next measured: the first whole period after the weight, then every interval."""
    assert record.weight_at is not None
    period = period_of(metric, time_scale=time_scale)
    first = (math.ceil(record.weight_at / period) + 1) * period
    state = state_of(record, metric.name)
    if state is None or state.at < record.weight_at:
        return float(first)
    return max(float(first), state.at + metric.interval * time_scale)


def due_metrics(spec: RolloutSpec, record: Record | None, now: float, *, time_scale: float = 1.0) -> tuple[Metric, ...]:
    """The metrics of ``spec`` to measure at ``now`` (the shell batches them for every rollout)."""
    if record is None or not measuring(spec, record):
        return ()
    return tuple(m for m in spec.analysis.metrics if next_due(m, record, time_scale=time_scale) <= now)


def wake_after(spec: RolloutSpec, record: Record, now: float, *, time_scale: float = 1.0) -> float | None:
    """Seconds until the next measurement is due (None: nothing to measure)."""
    if not measuring(spec, record):
        return None
    due = min(next_due(m, record, time_scale=time_scale) for m in spec.analysis.metrics)
    return max(_MIN_WAKE, due - now)


# ---- judging one measurement ---------------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def violations(metric: Metric, value: float, stable: float | None) -> list[str]:
    """Why ``value`` (and its stable baseline) fails ``metric``; empty when it passes."""
    found: list[str] = []
    threshold, compare = metric.threshold, metric.compare_to_stable
    if threshold is not None and threshold.max is not None and value > threshold.max:
        found.append(f"{_fmt(value)} is above max {_fmt(threshold.max)}")
    if threshold is not None and threshold.min is not None and value < threshold.min:
        found.append(f"{_fmt(value)} is below min {_fmt(threshold.min)}")
    if compare is not None and stable is not None:
        if compare.max_ratio is not None and value > stable * compare.max_ratio:
            found.append(f"{_fmt(value)} is more than {_fmt(compare.max_ratio)}x stable's {_fmt(stable)}")
        if compare.max_increase is not None and value - stable > compare.max_increase:
            found.append(f"{_fmt(value)} exceeds stable's {_fmt(stable)} by more than {_fmt(compare.max_increase)}")
    return found


def judge(metric: Metric, measurement: Measurement) -> Verdict:
    """Successful, Failed, or Inconclusive (no data: never a silent pass)."""
    if metric.min_samples is not None and (measurement.samples or 0) < metric.min_samples:
        return Verdict.INCONCLUSIVE
    if measurement.value is None or not math.isfinite(measurement.value):
        return Verdict.INCONCLUSIVE
    if violations(metric, measurement.value, measurement.stable):
        return Verdict.FAILED
    if metric.compare_to_stable is not None and measurement.stable is None:
        return Verdict.INCONCLUSIVE
    return Verdict.SUCCESSFUL


def fold(metric: Metric, state: MetricState | None, measurement: Measurement) -> MetricState:
    """``state`` after ``measurement``: consecutive counts, the last value and when it was taken."""
    verdict = judge(metric, measurement)
    failures = state.failures if state is not None else 0
    no_data = state.no_data if state is not None else 0
    if verdict is Verdict.INCONCLUSIVE:
        no_data += 1  # neither a pass nor a failure: consecutive failures are kept as they are
    else:
        no_data = 0
        failures = failures + 1 if verdict is Verdict.FAILED else 0
    value = measurement.value if measurement.value is not None and math.isfinite(measurement.value) else None
    return MetricState(metric.name, verdict, failures, no_data, value, measurement.stable, measurement.at)


def _counts(record: Record, measurement: Measurement, state: MetricState | None) -> bool:
    """A measurement is folded once, for the version in flight, and only for a period after the weight."""
    return (
        measurement.version == record.canary
        and record.weight_at is not None
        and measurement.window_start >= record.weight_at
        and (state is None or measurement.at > state.at)
    )


def with_measurements(spec: RolloutSpec, record: Record, measurements: dict[str, Measurement]) -> Record:
    """``record`` with this tick's measurements folded in (declared metrics only, declared order)."""
    states: list[MetricState] = []
    for metric in spec.analysis.metrics:
        state = state_of(record, metric.name)
        measurement = measurements.get(metric.name)
        if measurement is not None and _counts(record, measurement, state):
            state = fold(metric, state, measurement)
        if state is not None:
            states.append(state)
    return dataclasses.replace(record, metrics=tuple(states)) if tuple(states) != record.metrics else record


def passed_since_weight(spec: RolloutSpec, record: Record) -> bool:
    """Every metric's latest measurement was taken after the current weight was applied and passed."""
    if record.weight_at is None:
        return False
    for metric in spec.analysis.metrics:
        state = state_of(record, metric.name)
        # Strictly after: a measurement taken at the very instant the weight was applied was read
        # before the write (the shell measures first), so it judged the weight before this one.
        if state is None or state.at <= record.weight_at or state.outcome is not Verdict.SUCCESSFUL:
            return False
    return True


def accept_inconclusive(spec: RolloutSpec, record: Record, now: float) -> Record:
    """An operator's ``promote`` of an inconclusive analysis: every metric counts as passed now."""
    states = []
    for metric in spec.analysis.metrics:
        state = state_of(record, metric.name) or MetricState(metric.name)
        states.append(dataclasses.replace(state, outcome=Verdict.SUCCESSFUL, no_data=0, value=None, at=now))
    return dataclasses.replace(record, metrics=tuple(states))


def _failed(spec: RolloutSpec, record: Record) -> Iterator[tuple[Metric, MetricState]]:
    for state in record.metrics:
        metric = next((m for m in spec.analysis.metrics if m.name == state.name), None)
        if metric is not None and state.outcome is Verdict.FAILED and state.failures >= metric.failure_limit:
            yield metric, state


def inconclusive(spec: RolloutSpec, record: Record) -> list[Metric]:
    """Metrics with more consecutive no-data measurements than they tolerate."""
    found = []
    for state in record.metrics:
        metric = next((m for m in spec.analysis.metrics if m.name == state.name), None)
        if metric is not None and state.no_data > metric.inconclusive_limit:
            found.append(metric)
    return found


def describe_failure(metric: Metric, state: MetricState) -> str:
    value = state.value if state.value is not None else math.nan
    why = "; ".join(violations(metric, value, state.stable)) or "failed"
    scope = f"{metric.scope}-scoped " if metric.scope != "canary" else ""
    times = f", {state.failures} times in a row" if state.failures > 1 else ""
    return f"{scope}metric {metric.name} = {_fmt(value)}: {why}{times}"


# ---- rules ---------------------------------------------------------------------------------------


def metric_analysis(ctx: Ctx) -> Ctx | Decision:
    """Rule (safety, beside alarms and hooks): fold this tick's measurements; a failed metric rolls back."""
    record = ctx.record
    if not ctx.spec.analysis.metrics or record.canary is None or record.bypass:
        return ctx
    record = with_measurements(ctx.spec, record, dict(ctx.observed.measurements))
    ctx = ctx.with_record(record) if record is not ctx.record else ctx
    failed = next(_failed(ctx.spec, record), None)
    if failed is None:
        return ctx
    metric, state = failed
    message = (
        f"analysis failed: {describe_failure(metric, state)}: version {record.canary} rolled back to "
        f"{record.stable}; `retry` or a spec change starts it again"
    )
    return withdraw_decision(
        ctx,
        phase=Phase.ROLLED_BACK,
        reason=Reason.ANALYSIS_FAILED,
        message=message,
        outcome=Outcome.ROLLED_BACK,
        fail=True,
    )


def analysis_inconclusive(ctx: Ctx) -> Ctx | Decision:
    """Rule (before the plan moves): past a metric's ``inconclusiveLimit`` the rollout pauses for a person."""
    record = ctx.record
    if not measuring(ctx.spec, record):
        return ctx
    held = record.phase is Phase.PAUSED and record.reason == Reason.ANALYSIS_INCONCLUSIVE
    if held:
        return finish(ctx, record)
    metrics = inconclusive(ctx.spec, record)
    if not metrics:
        return ctx
    names = ", ".join(m.name for m in metrics)
    message = (
        f"analysis inconclusive: no data for metric {names} in more than {metrics[0].inconclusive_limit} "
        f"measurements in a row; version {record.canary} held at {record.weight}%: "
        "`promote` accepts and continues, `abort` rolls back"
    )
    new = dataclasses.replace(record, phase=Phase.PAUSED, reason=Reason.ANALYSIS_INCONCLUSIVE, message=message)
    return finish(ctx.with_record(new, Event(Reason.ANALYSIS_INCONCLUSIVE, message, warning=True)), new)


def _pending_text(ctx: Ctx, record: Record) -> str:
    parts = []
    for metric in ctx.spec.analysis.metrics:
        state = state_of(record, metric.name)
        left = max(0.0, next_due(metric, record, time_scale=ctx.time_scale) - ctx.now)
        if state is None or record.weight_at is None or state.at < record.weight_at:
            parts.append(f"{metric.name}: first measurement in {left:.0f}s")
        elif state.outcome is not Verdict.SUCCESSFUL:
            last = "no data" if state.value is None else _fmt(state.value)
            parts.append(f"{metric.name}: last {last} ({state.outcome}), next in {left:.0f}s")
    return "; ".join(parts)


def hold_for_analysis(ctx: Ctx, decision: Decision) -> Decision:
    """``decision`` unless it moves the plan past a weight whose analysis has not passed yet.

    A promote-full goes on (it is an explicit "finish now"; failed metrics and alarms still roll it
    back before this point), as does everything that is not a forward alias write.
    """
    record = ctx.record
    writes = any(isinstance(action, UpdateAlias) for action in decision.actions)
    if not writes or not measuring(ctx.spec, record) or record.reason == Reason.PROMOTE_FULL:
        return decision
    if passed_since_weight(ctx.spec, record):
        return decision
    message = f"version {record.canary} at {record.weight}%: waiting for every metric to pass before the next step"
    new = dataclasses.replace(record, phase=Phase.PROGRESSING, reason=Reason.WAITING_FOR_ANALYSIS, message=message)
    live = f"{message} ({_pending_text(ctx, record)})"
    return finish(ctx.with_record(new), new, live=live)


__all__ = [
    "accept_inconclusive",
    "analysis_inconclusive",
    "cloudwatch_period",
    "describe_failure",
    "due_metrics",
    "fold",
    "hold_for_analysis",
    "inconclusive",
    "judge",
    "measuring",
    "metric_analysis",
    "next_due",
    "passed_since_weight",
    "period_of",
    "state_of",
    "violations",
    "wake_after",
    "window",
    "with_measurements",
]
