"""Alarm evaluation when CloudWatch evaluates: once per alarm period, on period boundaries.

CloudWatch evaluates a metric alarm at the end of each of its periods, over the last
``EvaluationPeriods`` closed periods, and a state set with ``SetAlarmState`` holds until that next
evaluation. An emulator that evaluated every alarm every second would reset a hand-set state within a
second and react faster than AWS can, so a controller tested against it could rely on timing AWS
never gives. :class:`AlarmEvaluator` keeps CloudWatch's schedule, on a clock that tests may speed up:

* **Time scale.** ``alarm_period_scale`` (an :class:`~controller.emulator.settings.EmulatorSettings`
  field) is the wall-clock length of one second of alarm period: with 0.01, an alarm with
  ``Period: 60`` is evaluated every 0.6 s of wall time. The scale applies to the *data window* too:
  each evaluated datapoint is the statistic of the datapoints stamped in one scaled period (0.6 s of
  wall time), so an alarm's datapoints line up with its evaluations, and a burst of errors is seen
  by exactly one evaluation of a one-period alarm, as a minute of errors is in AWS. Periods are
  aligned to the epoch (``timestamp // period``, in integer microseconds), like CloudWatch's
  minutes; a scaled period is rounded to a multiple of 0.1 s (the resolution of Lambda's own
  metrics in :mod:`.lambda_metrics`, so their records never straddle two periods) and is never
  shorter than that. ``GetMetricData`` is not scaled: its periods are the caller's.
* **Evaluation.** At each boundary an alarm is evaluated over the periods that have just closed (the
  open one is never looked at), with Sum / Average / Minimum / Maximum / SampleCount / pNN,
  ``EvaluationPeriods``, ``DatapointsToAlarm``, the four threshold operators, ``TreatMissingData``
  and metric math; a new alarm is first evaluated at the end of the period it was created in.
  Datapoints stamped in a period but written after its boundary are seen only by later evaluations
  that still cover that period (late data, as in AWS).
* **Between boundaries nothing moves**: a ``SetAlarmState`` holds until the alarm's next
  evaluation. Composite alarms follow their children at once (:mod:`.alarms_ext`).

``alarm_evaluation`` False stops the timer (``Emulator.evaluate_alarms`` still evaluates on demand,
for tests that must pick the instant).
"""

from __future__ import annotations

import json
import logging
import operator
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import Alarm, CloudWatchBackend, cloudwatch_backends

from . import alarms_ext, cloudwatch_ext
from .cloudwatch_ext import MetricData, bucketed, epoch_us, from_us, iso, run_queries
from .lambda_metrics import RESOLUTION_US
from .settings import EmulatorSettings

log = logging.getLogger(__name__)

#: One pass at a time: a test's evaluate_alarms() and the timer must not both move an alarm.
_EVALUATION_LOCK = threading.Lock()
#: The evaluator re-checks at least this often (new alarms, changed settings).
MAX_SLEEP_SECONDS = 1.0

_COMPARE: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
Outcome = tuple[str, str, str]


def alarm_period(alarm: Alarm) -> int:
    """The alarm's period in seconds (metric-math alarms: their metrics' period)."""
    if alarm.period:
        return int(alarm.period)
    periods = [int(q.metric_stat.period) for q in alarm.metric_data_queries if q.metric_stat and q.metric_stat.period]
    return max(periods) if periods else 60


def wall_period_us(alarm: Alarm, scale: float) -> int:
    """The alarm's period on the wall clock, in µs: scaled, a multiple of Lambda's 0.1 s resolution."""
    scaled = alarm_period(alarm) * scale * 1_000_000
    return max(round(scaled / RESOLUTION_US) * RESOLUTION_US, RESOLUTION_US)


def _series(
    data: MetricData, alarm: Alarm, start_us: int, end_us: int, period_us: int, scale: float
) -> tuple[dict[int, float], str] | None:
    if alarm.metric_name:
        stat = alarm.extended_statistic or alarm.statistic
        points = data.points(alarm.namespace, alarm.metric_name, alarm.dimensions, alarm.unit)
        return bucketed(points, stat, period_us, start_us, end_us), stat
    if not alarm.metric_data_queries:
        return None
    queries = []
    for q in alarm.metric_data_queries:
        query: dict[str, Any] = {"Id": q.id, "ReturnData": q.return_data in (True, "true", "True", None)}
        if q.expression:
            query["Expression"] = q.expression
        elif q.metric_stat:
            ms = q.metric_stat
            query["MetricStat"] = {
                "Metric": {
                    "Namespace": ms.metric.namespace,
                    "MetricName": ms.metric.metric_name,
                    "Dimensions": [{"Name": d.name, "Value": d.value} for d in ms.metric.dimensions],
                },
                "Period": int(ms.period or alarm_period(alarm)),
                "Stat": ms.stat,
            }
        queries.append(query)
    results = run_queries(data, queries, start_us, end_us, period_scale=scale)
    returned = [series for q, series in results.values() if q.get("ReturnData")]
    return (returned[0] if returned else {}), "Expression"


def evaluate_alarm(data: MetricData, alarm: Alarm, *, boundary_us: int, scale: float, now: datetime) -> Outcome | None:
    """The state an alarm evaluated at ``boundary_us`` should be in: (state, reason, reason data), or None to leave it.

    The evaluation range is the ``EvaluationPeriods`` scaled periods that end at the boundary.
    """
    compare = _COMPARE.get(alarm.comparison_operator)
    if compare is None:
        return None  # anomaly-detection operators are not modelled
    period_us = wall_period_us(alarm, scale)
    periods = int(alarm.evaluation_periods or 1)
    needed = int(alarm.datapoints_to_alarm or periods)
    buckets = [boundary_us - period_us * (periods - i) for i in range(periods)]
    found = _series(data, alarm, buckets[0], boundary_us, period_us, scale)
    if found is None:
        return None
    series, stat = found
    values = [series.get(b) for b in buckets]
    treat = alarm.treat_missing_data or "missing"
    fn, words = compare
    breaching = sum(1 for v in values if v is not None and fn(v, alarm.threshold))
    present = [v for v in values if v is not None]
    missing = periods - len(present)
    if treat == "breaching":
        breaching += missing
    reason_data = {
        "version": "1.0",
        "queryDate": iso(now),
        "startDate": iso(from_us(buckets[0])),
        "statistic": stat,
        "period": alarm_period(alarm),
        "recentDatapoints": present,
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {"timestamp": iso(from_us(b)), **({"value": v} if v is not None else {})}
            for b, v in zip(buckets, values, strict=True)
        ],
    }
    if not present and treat in ("missing", "ignore"):
        if treat == "ignore":
            return None
        return (
            "INSUFFICIENT_DATA",
            f"Insufficient Data: {periods} datapoint{'s were' if periods > 1 else ' was'} unknown.",
            json.dumps(reason_data),
        )
    shown = ", ".join(
        f"{v} ({from_us(b).strftime('%d/%m/%y %H:%M:%S')})"
        for b, v in zip(buckets, values, strict=True)
        if v is not None
    )
    if breaching >= needed:
        state = "ALARM"
        verb = "were" if breaching > 1 else "was"
        reason = (
            f"Threshold Crossed: {breaching} out of the last {periods} datapoints [{shown}] {verb} {words} "
            f"the threshold ({alarm.threshold}) (minimum {needed} datapoint"
            f"{'s' if needed > 1 else ''} for OK -> ALARM transition)."
        )
    else:
        state = "OK"
        reason = (
            f"Threshold Crossed: {periods - breaching} out of the last {periods} datapoints [{shown}] "
            f"{'were' if periods - breaching > 1 else 'was'} not {words} the threshold ({alarm.threshold}) "
            f"(minimum {max(periods - needed + 1, 1)} datapoint for ALARM -> OK transition)."
        )
    return state, reason, json.dumps(reason_data)


class AlarmEvaluator:
    """Background thread: evaluates each metric alarm at the end of each of its (scaled) periods."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        cloudwatch_ext.on_alarm_put.append(self._scheduled)
        self._thread = threading.Thread(target=self._run, name="emulator-alarm-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._scheduled in cloudwatch_ext.on_alarm_put:
            cloudwatch_ext.on_alarm_put.remove(self._scheduled)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        """Re-plan now (the time scale changed, or an alarm was put)."""
        self._wake.set()

    def _scheduled(self, alarm: Alarm) -> None:
        # A new or updated alarm is first evaluated at the end of the period it was put in.
        period = wall_period_us(alarm, self.settings.alarm_period_scale)
        alarm._lr_evaluated_us = epoch_us(datetime.now(UTC)) // period * period  # type: ignore[attr-defined]
        self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = MAX_SLEEP_SECONDS
            if self.settings.alarm_evaluation:
                try:
                    timeout = self.evaluate(force=False)
                except Exception:  # keep evaluating: one odd alarm must not stop all others
                    log.exception("alarm evaluation pass failed")
            self._wake.wait(min(max(timeout, 0.001), MAX_SLEEP_SECONDS))
            self._wake.clear()

    def evaluate(self, *, at: datetime | None = None, force: bool = True) -> float:
        """Evaluate the alarms due at ``at`` (default now); with ``force``, every metric alarm.

        Each alarm is evaluated over the periods closed by ``at``. Returns the seconds until the
        next alarm is due.
        """
        with _EVALUATION_LOCK:
            now = at or datetime.now(UTC)
            now_us = epoch_us(now)
            scale = self.settings.alarm_period_scale
            next_due = now_us + int(MAX_SLEEP_SECONDS * 1_000_000)
            for account in list(cloudwatch_backends.keys()):
                for backend in list(cloudwatch_backends[account].values()):
                    next_due = min(next_due, self._evaluate_backend(backend, now, now_us, scale, force))
            return (next_due - now_us) / 1_000_000

    @staticmethod
    def _evaluate_backend(backend: CloudWatchBackend, now: datetime, now_us: int, scale: float, force: bool) -> int:
        data: MetricData | None = None
        next_due = now_us + int(MAX_SLEEP_SECONDS * 1_000_000)
        for alarm in list(backend.alarms.values()):
            if alarm.rule:  # composite alarms follow their children
                continue
            period = wall_period_us(alarm, scale)
            boundary = now_us // period * period
            last = getattr(alarm, "_lr_evaluated_us", None)
            if force or (last is not None and boundary > last):
                data = data or MetricData(backend)
                outcome = evaluate_alarm(data, alarm, boundary_us=boundary, scale=scale, now=now)
                if outcome is not None and outcome[0] != alarm.state_value:
                    alarm.update_state(outcome[1], outcome[2], outcome[0])
            alarm._lr_evaluated_us = max(boundary, last or boundary)  # type: ignore[attr-defined]
            next_due = min(next_due, alarm._lr_evaluated_us + period)  # type: ignore[attr-defined]
        if data is not None:
            alarms_ext.evaluate_composites(backend)
        return next_due
