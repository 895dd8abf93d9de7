"""CloudWatch that behaves like CloudWatch: alarms evaluated on a timer, events on every change.

moto stores alarms but never evaluates them (they start ``OK`` and stay there), emits no
EventBridge event when their state changes, fails ``GetMetricData`` with ``Stat: p99`` and
returns nothing for metric math. A controller that rolls back "when an alarm fires" cannot be
tested against that. This module:

* patches moto's ``Alarm`` so new alarms start ``INSUFFICIENT_DATA``, updates keep their state,
  and every state change (evaluation or ``SetAlarmState``) is published on the default event bus
  as ``aws.cloudwatch`` / ``CloudWatch Alarm State Change`` with AWS's detail shape;
* replaces ``GetMetricData`` with an implementation that knows Sum / Average / Minimum /
  Maximum / SampleCount / pNN and basic metric math (``+ - * /``, parentheses, query Ids);
* runs :class:`AlarmEvaluator`, a background thread evaluating every metric alarm against the
  stored data (Period, EvaluationPeriods, DatapointsToAlarm, ComparisonOperator,
  TreatMissingData) every ``alarm_evaluation_interval`` seconds;
* installs :mod:`.alarms_ext` (PutCompositeAlarm, composite evaluation on every child state
  change, DescribeAlarms filtering and paging).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch.models import (
    Alarm,
    CloudWatchBackend,
    MetricAggregatedDatum,
    MetricDatum,
    MetricDatumBase,
    cloudwatch_backends,
)

from . import alarms_ext
from .settings import EmulatorSettings

log = logging.getLogger(__name__)

_PATCHED = False
_PATCH_LOCK = threading.Lock()
_EVALUATION_LOCK = threading.Lock()
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")

# --- statistics ---------------------------------------------------------------------------


def _aware(ts: datetime) -> datetime:
    """moto stores naive UTC or aware datetimes depending on the path; compare them as aware."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (CloudWatch's answer for raw samples)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = pct / 100.0 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def statistic(data: list[MetricDatumBase], stat: str) -> float | None:
    """One statistic over the datapoints of one period; ``None`` when it cannot be computed."""
    if not data:
        return None
    raw = [d.value for d in data if isinstance(d, MetricDatum)]
    aggregated = [d for d in data if isinstance(d, MetricAggregatedDatum)]
    count = len(raw) + sum(a.sample_count for a in aggregated)
    total = sum(raw) + sum(a.sum for a in aggregated)
    if stat == "SampleCount":
        return float(count)
    if stat == "Sum":
        return float(total)
    if stat == "Average":
        return float(total / count) if count else None
    if stat == "Minimum":
        return float(min([*raw, *(a.min for a in aggregated)]))
    if stat == "Maximum":
        return float(max([*raw, *(a.max for a in aggregated)]))
    match = _PERCENTILE.match(stat)
    if match and raw:
        return _percentile(raw, float(match.group(1)))
    return None


def _dims_equal(datum: MetricDatumBase, dims: Iterable[dict[str, str]] | Iterable[Any]) -> bool:
    """CloudWatch matches dimensions exactly: same set of names and values, no more, no less."""
    wanted = set()
    for d in dims:
        if isinstance(d, dict):
            wanted.add((d["Name"], d.get("Value")))
        else:
            wanted.add((d.name, d.value))
    return {(d.name, d.value) for d in datum.dimensions} == wanted


def select(
    data: Iterable[MetricDatumBase],
    namespace: str,
    name: str,
    dims: Iterable[Any],
    unit: str | None = None,
) -> list[MetricDatumBase]:
    dims = list(dims)
    return [
        d
        for d in data
        if d.namespace == namespace and d.name == name and _dims_equal(d, dims) and (not unit or d.unit == unit)
    ]


def bucketed(
    data: list[MetricDatumBase], stat: str, period: int, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    """(bucket start, value) for every period in [start, end) that has data, ascending."""
    buckets: dict[datetime, list[MetricDatumBase]] = {}
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for datum in data:
        ts = _aware(datum.timestamp)
        if not start <= ts < end:
            continue
        offset = int((ts - epoch).total_seconds()) // period * period
        buckets.setdefault(epoch + timedelta(seconds=offset), []).append(datum)
    result = []
    for ts in sorted(buckets):
        value = statistic(buckets[ts], stat)
        if value is not None:
            result.append((ts, value))
    return result


# --- metric math --------------------------------------------------------------------------

_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
Series = dict[datetime, float]


def evaluate_expression(expression: str, series: Callable[[str], Series | None]) -> Series:
    """Evaluate ``e/n*100``-style math over time series; a datapoint exists where every operand has one.

    Only arithmetic on query Ids and numbers is supported: it is what alarms and canary analysis use.
    """
    tree = ast.parse(expression.strip(), mode="eval")

    def walk(node: ast.AST) -> Series | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            found = series(node.id)
            if found is None:
                raise ValueError(f"Unknown metric or expression: {node.id}")
            return found
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return -inner if isinstance(inner, float) else {k: -v for k, v in inner.items()}
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            fn = _BINOPS[type(node.op)]
            left, right = walk(node.left), walk(node.right)
            return _combine(fn, left, right)
        raise ValueError(f"Unsupported metric math: {expression}")

    result = walk(tree)
    if isinstance(result, float):
        return {}
    return result


def _combine(fn: Callable[[float, float], float], left: Series | float, right: Series | float) -> Series | float:
    def safe(a: float, b: float) -> float | None:
        try:
            return fn(a, b)
        except ZeroDivisionError:
            return None

    if isinstance(left, float) and isinstance(right, float):
        value = safe(left, right)
        return value if value is not None else math.nan
    out: Series = {}
    keys = (left.keys() if isinstance(left, dict) else set()) | (right.keys() if isinstance(right, dict) else set())
    for key in keys:
        a = left if isinstance(left, float) else left.get(key)
        b = right if isinstance(right, float) else right.get(key)
        if a is None or b is None:
            continue
        value = safe(a, b)
        if value is not None:
            out[key] = value
    return out


def run_queries(
    backend: CloudWatchBackend,
    queries: list[dict[str, Any]],
    start: datetime,
    end: datetime,
) -> dict[str, tuple[dict[str, Any], Series]]:
    """Evaluate MetricStat and math queries; returns Id -> (query, series)."""
    data = backend.get_all_metrics()
    start, end = _aware(start), _aware(end)
    by_id = {q["Id"]: q for q in queries}
    done: dict[str, Series] = {}
    visiting: set[str] = set()

    def resolve(query_id: str) -> Series | None:
        if query_id in done:
            return done[query_id]
        query = by_id.get(query_id)
        if query is None or query_id in visiting:
            return None
        visiting.add(query_id)
        if "MetricStat" in query:
            ms = query["MetricStat"]
            metric = ms["Metric"]
            points = select(
                data, metric["Namespace"], metric["MetricName"], metric.get("Dimensions", []), ms.get("Unit")
            )
            result: Series = dict(bucketed(points, ms["Stat"], int(ms["Period"]), start, end))
        else:
            result = evaluate_expression(query["Expression"], resolve)
        visiting.discard(query_id)
        done[query_id] = result
        return result

    return {qid: (q, resolve(qid) or {}) for qid, q in by_id.items()}


def get_metric_data(
    self: CloudWatchBackend,
    queries: list[dict[str, Any]],
    start_time: datetime,
    end_time: datetime,
    scan_by: str = "TimestampDescending",
) -> list[dict[str, Any]]:
    """Replacement for moto's GetMetricData (percentiles, exact dimensions, metric math)."""
    if any(str(q.get("Expression", "")).upper().startswith("SELECT") for q in queries):
        return _ORIGINAL_GET_METRIC_DATA(self, queries, start_time, end_time, scan_by)  # type: ignore[no-any-return]
    results = run_queries(self, queries, start_time, end_time)
    out = []
    for query_id, (query, series) in results.items():
        if not query.get("ReturnData", True):
            continue
        stamps = sorted(series, reverse=scan_by != "TimestampAscending")
        label = query.get("Label") or (
            f"{query['MetricStat']['Metric']['MetricName']}" if "MetricStat" in query else query_id
        )
        out.append(
            {
                "id": query_id,
                "label": label,
                "values": [series[t] for t in stamps],
                "timestamps": stamps,
                "status_code": "Complete",
            }
        )
    return out


_ORIGINAL_GET_METRIC_DATA: Callable[..., Any] = CloudWatchBackend.get_metric_data

# --- alarm state changes as events --------------------------------------------------------


def _iso(ts: datetime) -> str:
    return _aware(ts).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _alarm_configuration(alarm: Alarm) -> dict[str, Any]:
    if alarm.rule:
        # Composite alarms: AWS's event carries the rule instead of metrics.
        return {"alarmRule": alarm.rule, "description": alarm.description or ""}
    if alarm.metric_name:
        stat = alarm.extended_statistic or alarm.statistic
        metrics = [
            {
                "id": "m1",
                "metricStat": {
                    "metric": {
                        "namespace": alarm.namespace,
                        "name": alarm.metric_name,
                        "dimensions": {d.name: d.value for d in alarm.dimensions},
                    },
                    "period": alarm.period,
                    "stat": stat,
                },
                "returnData": True,
            }
        ]
    else:
        metrics = [
            {"id": q.id, "expression": q.expression, "returnData": q.return_data} for q in alarm.metric_data_queries
        ]
    return {"description": alarm.description or "", "metrics": metrics}


def publish_state_change(alarm: Alarm, previous: dict[str, Any]) -> None:
    """Send AWS's ``CloudWatch Alarm State Change`` event to the default bus of the alarm's account."""
    from moto.events.models import events_backends

    _, _, _, region, account = alarm.alarm_arn.split(":")[:5]
    detail = {
        "alarmName": alarm.name,
        "state": {
            "value": alarm.state_value,
            "reason": alarm.state_reason,
            "reasonData": alarm.state_reason_data,
            "timestamp": _iso(alarm.state_updated_timestamp),
        },
        "previousState": previous,
        "configuration": _alarm_configuration(alarm),
    }
    try:
        events_backends[account][region].put_events(
            [
                {
                    "Source": "aws.cloudwatch",
                    "DetailType": "CloudWatch Alarm State Change",
                    "Detail": json.dumps(detail),
                    "Resources": [alarm.alarm_arn],
                    # No "Time": moto's event bus only handles epoch seconds there (it fills
                    # them in), so the envelope's "time" is a number; detail timestamps are ISO.
                }
            ]
        )
    except Exception:  # a broken target must not break CloudWatch itself
        log.exception("publishing alarm state change for %s failed", alarm.name)


def install() -> None:
    """Patch moto's CloudWatch models once per process (idempotent)."""
    global _PATCHED
    with _PATCH_LOCK:
        if _PATCHED:
            return
        _PATCHED = True

    orig_init = Alarm.__init__
    orig_update_state = Alarm.update_state
    orig_put_metric_alarm = CloudWatchBackend.put_metric_alarm

    def alarm_init(self: Alarm, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"
        self.state_reason = "Unchecked: Initial alarm creation"

    def update_state(self: Alarm, reason: str, reason_data: str, state_value: str) -> None:
        previous = {
            "value": self.state_value,
            "reason": self.state_reason,
            "reasonData": self.state_reason_data,
            "timestamp": _iso(self.state_updated_timestamp),
        }
        orig_update_state(self, reason, reason_data, state_value)
        if previous["value"] != state_value:
            publish_state_change(self, previous)
            alarms_ext.on_state_change(self)

    def put_metric_alarm(self: CloudWatchBackend, name: str, *args: Any, **kwargs: Any) -> Alarm:
        # AWS: "When you update an existing alarm, its state is left unchanged".
        old = self.alarms.get(name)
        alarm = orig_put_metric_alarm(self, name, *args, **kwargs)
        if old is not None:
            alarm.state_value = old.state_value
            alarm.state_reason = old.state_reason
            alarm.state_reason_data = old.state_reason_data
            alarm.state_updated_timestamp = old.state_updated_timestamp
            alarm.history = old.history
        return alarm

    alarms_ext.install()
    Alarm.__init__ = alarm_init  # type: ignore[method-assign]
    Alarm.update_state = update_state  # type: ignore[method-assign]
    CloudWatchBackend.put_metric_alarm = put_metric_alarm  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]


# --- alarm evaluation ---------------------------------------------------------------------

_COMPARE: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}


def evaluate_alarm(backend: CloudWatchBackend, alarm: Alarm, now: datetime) -> tuple[str, str, str] | None:
    """The state an alarm should be in now: (state, reason, reason data), or ``None`` to leave it.

    The evaluation range is the last ``EvaluationPeriods`` periods including the current, still
    open one once it has data: real CloudWatch waits for a period to close, but here that would only
    add latency. While the open period has no data yet (it has just begun) the range ends with the
    last closed period instead, so an alarm does not flap to INSUFFICIENT_DATA at every boundary.
    """
    compare = _COMPARE.get(alarm.comparison_operator)
    if compare is None:
        return None  # anomaly-detection operators are not modelled
    period = int(alarm.period or 60)
    periods = int(alarm.evaluation_periods or 1)
    needed = int(alarm.datapoints_to_alarm or periods)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    current = epoch + timedelta(seconds=int((now - epoch).total_seconds()) // period * period)
    # One period more than needed is read, so the window can slide back while the open one is empty.
    start = current - timedelta(seconds=period * periods)
    end = current + timedelta(seconds=period)
    if alarm.metric_name:
        stat = alarm.extended_statistic or alarm.statistic
        points = select(backend.get_all_metrics(), alarm.namespace, alarm.metric_name, alarm.dimensions, alarm.unit)
        series = dict(bucketed(points, stat, period, start, end))
    elif alarm.metric_data_queries:
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
                    "Period": int(ms.period or period),
                    "Stat": ms.stat,
                }
            queries.append(query)
        results = run_queries(backend, queries, start, end)
        returned = [series for q, series in results.values() if q.get("ReturnData")]
        series = returned[0] if returned else {}
        stat = "Expression"
    else:
        return None
    last = current if current in series else current - timedelta(seconds=period)
    buckets = [last - timedelta(seconds=period * i) for i in reversed(range(periods))]
    start = buckets[0]
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
        "queryDate": _iso(now),
        "startDate": _iso(start),
        "statistic": stat,
        "period": period,
        "recentDatapoints": present,
        "threshold": alarm.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(b), **({"value": v} if v is not None else {})}
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
        f"{v} ({_aware(b).strftime('%d/%m/%y %H:%M:%S')})"
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
    """Background thread: evaluates every metric alarm in every account and region on a timer."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emulator-alarm-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        """Evaluate now (used when the interval changes so a long sleep does not delay it)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(max(self.settings.alarm_evaluation_interval, 0.05))
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.evaluate_all()
            except Exception:  # keep evaluating: one odd alarm must not stop all others
                log.exception("alarm evaluation pass failed")

    @staticmethod
    def evaluate_all(now: datetime | None = None) -> None:
        # One pass at a time: a test's evaluate_alarms() and the timer thread must not both
        # move the same alarm (that would publish the same state change twice).
        with _EVALUATION_LOCK:
            now = now or datetime.now(UTC)
            for account in list(cloudwatch_backends.keys()):
                for backend in list(cloudwatch_backends[account].values()):
                    for alarm in list(backend.alarms.values()):
                        if alarm.rule:  # composite alarms follow their children, below
                            continue
                        outcome = evaluate_alarm(backend, alarm, now)
                        if outcome is None:
                            continue
                        state, reason, data = outcome
                        if state != alarm.state_value:
                            alarm.update_state(reason, data, state)
                    alarms_ext.evaluate_composites(backend)
