"""CloudWatch that behaves like CloudWatch: AWS's namespaces refused, statistics computed, transitions recorded.

moto stores alarms but never evaluates them (they start ``OK`` and stay there), emits no EventBridge
event and no history item when their state changes, accepts ``PutMetricData`` into ``AWS/...``
namespaces (AWS refuses them: those metrics come from the services), fails ``GetMetricData`` with
``Stat: p99`` and returns nothing for metric math. A controller that rolls back "when an alarm fires"
cannot be tested against that. This module:

* refuses ``PutMetricData`` into a namespace starting with ``AWS/`` with AWS's
  ``InvalidParameterValue`` ("The value AWS/Lambda for parameter Namespace is invalid."); Lambda's
  metrics come from invocations (:mod:`.lambda_metrics`);
* replaces ``GetMetricData`` with Sum / Average / Minimum / Maximum / SampleCount / pNN over exact
  dimension matches, in period buckets aligned to the epoch (any period, so high-resolution metrics
  read per second), and metric math (``+ - * /``, parentheses, query Ids);
* patches moto's ``Alarm`` so new alarms start ``INSUFFICIENT_DATA``, an update keeps the state, and
  every transition (evaluation, ``SetAlarmState``, a composite following its children) updates
  ``StateTransitionedTimestamp``, is published on the default event bus as ``aws.cloudwatch`` /
  ``CloudWatch Alarm State Change`` with AWS's detail shape, and adds a ``StateUpdate`` history item
  (:mod:`.alarm_history`); a ``SetAlarmState`` to the state the alarm is already in only updates its
  reason and ``StateUpdatedTimestamp``;
* installs :mod:`.alarms_ext` (composites, DescribeAlarms) and :mod:`.alarm_history`.

When alarms are evaluated is :mod:`.alarm_eval`'s business.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import operator
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.cloudwatch.exceptions import InvalidParameterValue
from moto.cloudwatch.models import (
    Alarm,
    CloudWatchBackend,
    MetricAggregatedDatum,
    MetricDatum,
    MetricDatumBase,
)
from moto.core.utils import utcnow

from . import alarm_history, alarms_ext
from .alarm_history import StateSnapshot
from .lambda_metrics import NAMESPACE as LAMBDA_NAMESPACE
from .lambda_metrics import InvocationMetrics, Slot

log = logging.getLogger(__name__)

_PATCHED = False
_PATCH_LOCK = threading.Lock()
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?|100)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Namespaces reserved for AWS services: PutMetricData into them is refused.
RESERVED_PREFIX = "AWS/"

Point = MetricDatumBase | Slot

# --- time ---------------------------------------------------------------------------------


def _aware(ts: datetime) -> datetime:
    """moto stores naive UTC or aware datetimes depending on the path; compare them as aware."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def epoch_us(ts: datetime) -> int:
    """Exact microseconds since the epoch: bucket arithmetic in integers, so fractional periods line up."""
    return (_aware(ts) - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _point_us(point: Point) -> int:
    return point.timestamp_us if isinstance(point, Slot) else epoch_us(point.timestamp)


# --- statistics ---------------------------------------------------------------------------


def _weighted_percentile(pairs: Sequence[tuple[float, int]], pct: float) -> float:
    """Linear interpolation between closest ranks over (value, count) pairs (raw samples have count 1)."""
    ordered = sorted(pairs)
    total = sum(count for _, count in ordered)
    rank = pct / 100.0 * (total - 1)
    low_rank = math.floor(rank)

    def at(position: int) -> float:
        seen = 0
        for value, count in ordered:
            seen += count
            if position < seen:
                return value
        return ordered[-1][0]

    low = at(low_rank)
    high = at(min(low_rank + 1, total - 1))
    return low + (high - low) * (rank - low_rank)


def statistic(data: Sequence[Point], stat: str) -> float | None:
    """One statistic over the datapoints of one period; ``None`` when it cannot be computed."""
    if not data:
        return None
    raw = [d.value for d in data if isinstance(d, MetricDatum)]
    aggregated = [d for d in data if isinstance(d, MetricAggregatedDatum)]
    slots = [d for d in data if isinstance(d, Slot)]
    count = len(raw) + sum(a.sample_count for a in aggregated) + sum(s.count for s in slots)
    total = sum(raw) + sum(a.sum for a in aggregated) + sum(s.total for s in slots)
    if stat == "SampleCount":
        return float(count)
    if stat == "Sum":
        return float(total)
    if stat == "Average":
        return float(total / count) if count else None
    if stat == "Minimum":
        return float(min([*raw, *(a.min for a in aggregated), *(s.low for s in slots)]))
    if stat == "Maximum":
        return float(max([*raw, *(a.max for a in aggregated), *(s.high for s in slots)]))
    match = _PERCENTILE.match(stat)
    # Percentiles need the values themselves: statistic sets put by callers have none (AWS alike).
    pairs = [(value, 1) for value in raw] + [pair for s in slots for pair in s.values.items()]
    if match and pairs:
        return _weighted_percentile(pairs, float(match.group(1)))
    return None


def _dimension_key(dims: Iterable[dict[str, str]] | Iterable[Any]) -> frozenset[tuple[str, str | None]]:
    wanted = set()
    for d in dims:
        if isinstance(d, dict):
            wanted.add((d["Name"], d.get("Value")))
        else:
            wanted.add((d.name, d.value))
    return frozenset(wanted)


class MetricData:
    """One read of a backend's datapoints, grouped by metric so each query scans only its own.

    CloudWatch matches dimensions exactly (same names and values, no more, no less). Callers'
    datapoints come from moto's list; Lambda's own from the invocation index.
    """

    def __init__(self, backend: CloudWatchBackend) -> None:
        self._account = backend.account_id
        self._region = backend.region_name
        self._by_metric: dict[tuple[str, str], list[MetricDatumBase]] = {}
        for datum in list(backend.metric_data):
            self._by_metric.setdefault((datum.namespace, datum.name), []).append(datum)

    def points(self, namespace: str, name: str, dims: Iterable[Any], unit: str | None = None) -> list[Point]:
        key = _dimension_key(dims)
        found: list[Point] = [
            d
            for d in self._by_metric.get((namespace, name), [])
            if _dimension_key(d.dimensions) == key and (not unit or d.unit == unit)
        ]
        if namespace == LAMBDA_NAMESPACE and all(value is not None for _, value in key):
            pairs = [(dim, str(value)) for dim, value in key]
            found += InvocationMetrics.slots(self._account, self._region, name, pairs)
        return found


def bucketed(data: list[Point], stat: str, period_us: int, start_us: int, end_us: int) -> dict[int, float]:
    """{bucket start (µs): value} for every ``period_us`` bucket in [start, end) that has data."""
    buckets: dict[int, list[Point]] = {}
    for point in data:
        at = _point_us(point)
        if start_us <= at < end_us:
            buckets.setdefault(at // period_us * period_us, []).append(point)
    result = {}
    for bucket in sorted(buckets):
        value = statistic(buckets[bucket], stat)
        if value is not None:
            result[bucket] = value
    return result


# --- metric math --------------------------------------------------------------------------

_BINOPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
Series = dict[int, float]


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
    data: MetricData,
    queries: list[dict[str, Any]],
    start_us: int,
    end_us: int,
    *,
    period_scale: float = 1.0,
) -> dict[str, tuple[dict[str, Any], Series]]:
    """Evaluate MetricStat and math queries; returns Id -> (query, series keyed by bucket start in µs).

    ``period_scale`` turns each query's ``Period`` into wall-clock microseconds: 1 for GetMetricData,
    the emulator's alarm time scale for alarm evaluation (see :mod:`.alarm_eval`).
    """
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
            points = data.points(
                metric["Namespace"], metric["MetricName"], metric.get("Dimensions", []), ms.get("Unit")
            )
            period_us = max(round(float(ms["Period"]) * period_scale * 1_000_000), 1)
            result: Series = bucketed(points, ms["Stat"], period_us, start_us, end_us)
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
    results = run_queries(MetricData(self), queries, epoch_us(start_time), epoch_us(end_time))
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
                "timestamps": [from_us(t) for t in stamps],
                "status_code": "Complete",
            }
        )
    return out


_ORIGINAL_GET_METRIC_DATA: Callable[..., Any] = CloudWatchBackend.get_metric_data
_ORIGINAL_PUT_METRIC_DATA: Callable[..., Any] = CloudWatchBackend.put_metric_data


def put_metric_data(self: CloudWatchBackend, namespace: str, metric_data: list[dict[str, Any]]) -> None:
    """PutMetricData, refusing AWS's own namespaces as CloudWatch does."""
    if namespace.startswith(RESERVED_PREFIX):
        raise InvalidParameterValue(f"The value {namespace} for parameter Namespace is invalid.")
    _ORIGINAL_PUT_METRIC_DATA(self, namespace, metric_data)


# --- alarm state changes as events ----------------------------------------------------------


def iso(ts: datetime) -> str:
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


def _event_state(state: StateSnapshot) -> dict[str, Any]:
    return {
        "value": state.value,
        "reason": state.reason,
        "reasonData": state.reason_data,
        "timestamp": iso(state.timestamp),
    }


def publish_state_change(alarm: Alarm, previous: StateSnapshot) -> None:
    """Send AWS's ``CloudWatch Alarm State Change`` event to the default bus of the alarm's account."""
    from moto.events.models import events_backends

    _, _, _, region, account = alarm.alarm_arn.split(":")[:5]
    detail = {
        "alarmName": alarm.name,
        "state": _event_state(StateSnapshot.of(alarm)),
        "previousState": _event_state(previous),
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
                    # No "Time": moto's bus stamps epoch seconds and its SQS and Logs targets turn
                    # them into ISO-8601, as AWS delivers them.
                }
            ]
        )
    except Exception:  # a broken target must not break CloudWatch itself
        log.exception("publishing alarm state change for %s failed", alarm.name)


#: Called after every PutMetricAlarm (the evaluator wakes up to schedule the alarm).
on_alarm_put: list[Callable[[Alarm], None]] = []


def install() -> None:
    """Patch moto's CloudWatch models once per process (idempotent)."""
    global _PATCHED
    with _PATCH_LOCK:
        if _PATCHED:
            return
        _PATCHED = True

    orig_init = Alarm.__init__
    orig_put_metric_alarm = CloudWatchBackend.put_metric_alarm
    orig_delete_alarms = CloudWatchBackend.delete_alarms

    def alarm_init(self: Alarm, *args: Any, **kwargs: Any) -> None:
        orig_init(self, *args, **kwargs)
        self.state_value = "INSUFFICIENT_DATA"
        self.state_reason = "Unchecked: Initial alarm creation"
        self.state_transitioned_timestamp = self.state_updated_timestamp  # type: ignore[attr-defined]

    def update_state(self: Alarm, reason: str, reason_data: str, state_value: str) -> None:
        """Every state update: a transition also publishes its event and a history item."""
        previous = StateSnapshot.of(self)
        self.state_reason = reason
        self.state_reason_data = reason_data
        self.state_value = state_value
        self.state_updated_timestamp = utcnow()
        if previous.value == state_value:
            return
        self.state_transitioned_timestamp = self.state_updated_timestamp  # type: ignore[attr-defined]
        alarm_history.record_state_update(self, previous, StateSnapshot.of(self))
        publish_state_change(self, previous)
        alarms_ext.on_state_change(self)

    def put_metric_alarm(self: CloudWatchBackend, name: str, *args: Any, **kwargs: Any) -> Alarm:
        # AWS: "When you update an existing alarm, its state is left unchanged".
        old = self.alarms.get(name)
        alarm = orig_put_metric_alarm(self, name, *args, **kwargs)
        if old is not None:
            for kept in (
                "state_value",
                "state_reason",
                "state_reason_data",
                "state_updated_timestamp",
                "state_transitioned_timestamp",
                "history",
            ):
                setattr(alarm, kept, getattr(old, kept))
        alarm_history.record_configuration(alarm, original=old, at=alarm.configuration_updated_timestamp)
        for hook in on_alarm_put:
            hook(alarm)
        return alarm

    def delete_alarms(self: CloudWatchBackend, alarm_names: list[str]) -> None:
        now = utcnow()
        for alarm_name in alarm_names:
            alarm = self.alarms.get(alarm_name)
            if alarm is not None:
                alarm_history.record_deletion(alarm, at=now)
        orig_delete_alarms(self, alarm_names)

    alarms_ext.install()
    alarm_history.install()
    Alarm.__init__ = alarm_init  # type: ignore[method-assign]
    Alarm.update_state = update_state  # type: ignore[method-assign]
    CloudWatchBackend.put_metric_alarm = put_metric_alarm  # type: ignore[method-assign]
    CloudWatchBackend.delete_alarms = delete_alarms  # type: ignore[method-assign]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign]
    CloudWatchBackend.put_metric_data = put_metric_data  # type: ignore[method-assign]
