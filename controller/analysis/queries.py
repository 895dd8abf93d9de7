"""Metric queries: ``spec.analysis.metrics`` measured for every rollout of a tick in one batched read.

Their cost must not grow with the number of rollouts: every measurement due in a tick, for all
rollouts, is one ``GetMetricData`` call (up to 500 queries; more calls only beyond that). The core
says which metrics are due (``controller.core.metric_analysis.due_metrics``), ``plan`` builds their queries,
``measure`` makes the call through ``CloudWatchAdapter.get_metric_data`` and hands back one
``Measurement`` per metric; the core judges them (Successful / Failed / Inconclusive).
``MetricQueries`` is the analysis provider around it (``controller.analysis``).

Per-version scoping is the point: a metric with ``scope: canary`` reads the ``AWS/Lambda`` metric
with ``FunctionName``, ``Resource`` = ``function:alias`` and ``ExecutedVersion`` = the new version,
so an alias-level alarm that fires because of the old version does not judge the fix. ``stable``
scopes to the stable version, ``alias`` drops ``ExecutedVersion``; ``compareToStable`` runs the same
query again scoped to the stable version, and ``minSamples`` adds an ``Invocations`` Sum beside it.

Query ids are unique per call: ``r<rollout>m<metric><c|s|n>``, expression inputs suffixed with their
own id (the expression is rewritten to match). Each measurement reads exactly one datapoint: the
bucket of its period that starts at its window (``controller.core.metric_analysis.window``); nothing there
is "no data", never a pass. A failed call is logged and measures nothing this tick: the metrics stay
due and the step stays held.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.analysis import Evidence, Subject
from controller.aws.cloudwatch import CloudWatchAdapter, Series
from controller.aws.errors import AwsError
from controller.core.metric_analysis import due_metrics, period_of, window
from controller.core.types import Measurement, Record
from controller.document.model import Metric, MetricQuery, RolloutSpec
from controller.document.names import function_name_of

logger = logging.getLogger("controller.analysis.queries")

_QUERY_ID = re.compile(r"\b[a-z][a-zA-Z0-9_]*\b")
#: Rollout key -> metric name -> the measurement taken this tick.
Measurements = dict[str, dict[str, Measurement]]


@dataclass(frozen=True)
class _Planned:
    """One metric measurement of one rollout: where its answer will be in the call's results."""

    key: str
    metric: Metric
    version: str
    start: float
    end: float
    value_id: str
    stable_id: str | None = None
    samples_id: str | None = None


def dimensions(spec: RolloutSpec, version: str | None) -> list[dict[str, str]]:
    """Lambda's per-version dimensions (``version`` None: the whole alias)."""
    function = function_name_of(spec.function_name)
    dims = [{"Name": "FunctionName", "Value": function}, {"Name": "Resource", "Value": f"{function}:{spec.alias}"}]
    if version is not None:
        dims.append({"Name": "ExecutedVersion", "Value": version})
    return dims


def _stat(query_id: str, query: MetricQuery, dims: list[dict[str, str]], period: int, *, data: bool) -> dict[str, Any]:
    metric = {"Namespace": query.namespace, "MetricName": query.metric_name, "Dimensions": dims}
    return {"Id": query_id, "MetricStat": {"Metric": metric, "Period": period, "Stat": query.stat}, "ReturnData": data}


def queries_for(metric: Metric, *, prefix: str, dims: list[dict[str, str]], period: int) -> list[dict[str, Any]]:
    """The GetMetricData queries whose result ``prefix`` is ``metric``'s value for ``dims``."""
    if metric.expression is None:
        (query,) = metric.queries
        return [_stat(prefix, query, dims, period, data=True)]
    ids = {q.id for q in metric.queries}
    inputs = [_stat(f"{prefix}_{q.id}", q, dims, period, data=False) for q in metric.queries]
    expression = _QUERY_ID.sub(
        lambda m: f"{prefix}_{m.group(0)}" if m.group(0) in ids else m.group(0), metric.expression
    )
    return [*inputs, {"Id": prefix, "Expression": expression, "ReturnData": True}]


def _scoped_version(metric: Metric, record: Record) -> str | None:
    if metric.scope == "alias":
        return None
    return record.stable if metric.scope == "stable" else record.canary


def plan(
    items: Sequence[tuple[RolloutSpec, Record]], *, now: float, time_scale: float = 1.0
) -> tuple[list[list[dict[str, Any]]], list[_Planned]]:
    """The query groups (one per value) and where each due measurement's answers will be."""
    groups: list[list[dict[str, Any]]] = []
    planned: list[_Planned] = []
    for r, (spec, record) in enumerate(items):
        assert record.canary is not None
        for metric in due_metrics(spec, record, now, time_scale=time_scale):
            m = spec.analysis.metrics.index(metric)
            period = period_of(metric, time_scale=time_scale)
            start, end = window(now, period)
            dims = dimensions(spec, _scoped_version(metric, record))
            value_id = f"r{r}m{m}c"
            groups.append(queries_for(metric, prefix=value_id, dims=dims, period=period))
            stable_id = samples_id = None
            if metric.compare_to_stable is not None:
                stable_id = f"r{r}m{m}s"
                groups.append(
                    queries_for(metric, prefix=stable_id, dims=dimensions(spec, record.stable), period=period)
                )
            if metric.min_samples is not None:
                samples_id = f"r{r}m{m}n"
                invocations = MetricQuery(id="n", metric_name="Invocations", stat="Sum")
                groups.append([_stat(samples_id, invocations, dims, period, data=True)])
            planned.append(_Planned(spec.key, metric, record.canary, start, end, value_id, stable_id, samples_id))
    return groups, planned


def _point(series: Series, query_id: str | None, start: float) -> float | None:
    return None if query_id is None else series.get(query_id, {}).get(start)


def measurements_from(series: Series, planned: Sequence[_Planned], *, now: float) -> Measurements:
    """Each planned measurement's value, baseline and samples: the datapoint of its window's bucket."""
    out: Measurements = {}
    for item in planned:
        out.setdefault(item.key, {})[item.metric.name] = Measurement(
            version=item.version,
            at=now,
            window_start=item.start,
            value=_point(series, item.value_id, item.start),
            stable=_point(series, item.stable_id, item.start),
            samples=_point(series, item.samples_id, item.start),
        )
    return out


async def measure(
    cloudwatch: CloudWatchAdapter,
    items: Sequence[tuple[RolloutSpec, Record]],
    *,
    now: float,
    time_scale: float = 1.0,
) -> Measurements:
    """Take every measurement due at ``now`` for ``items`` in one batched read (no call if none is due)."""
    groups, planned = plan(items, now=now, time_scale=time_scale)
    if not planned:
        return {}
    start, end = min(p.start for p in planned), max(p.end for p in planned)
    try:
        series = await cloudwatch.get_metric_data(groups, start=start, end=end)
    except AwsError as exc:
        logger.warning("metric analysis: GetMetricData failed, measuring again next tick: %s", exc)
        return {}
    return measurements_from(series, planned, now=now)


class MetricQueries:
    """``spec.analysis.metrics`` as an analysis provider: one batched GetMetricData per tick for all.

    At most one batch is in flight. A tick waits ``wait`` seconds for it; a slower answer is taken by
    a later tick (each measurement keeps its own time and window), so a slow CloudWatch holds back no
    alarm and no other rollout.
    """

    def __init__(self, cloudwatch: CloudWatchAdapter, *, time_scale: float = 1.0, wait: float = 1.0) -> None:
        self._cloudwatch = cloudwatch
        self._time_scale = time_scale
        self._wait = wait
        self._batch: asyncio.Task[Measurements] | None = None

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        if self._batch is None:
            items = [
                (s.spec, s.record)
                for s in subjects
                if s.record is not None and due_metrics(s.spec, s.record, now, time_scale=self._time_scale)
            ]
            if not items:
                return {}
            self._batch = asyncio.create_task(
                measure(self._cloudwatch, items, now=now, time_scale=self._time_scale), name="measure"
            )
        done, _ = await asyncio.wait({self._batch}, timeout=None if wait else self._wait)
        if not done:
            return {}
        batch, self._batch = self._batch, None
        return {key: Evidence(measurements=found) for key, found in batch.result().items()}

    def close(self) -> None:
        """Stop a batch still in flight (the engine stops)."""
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None


__all__ = ["Measurements", "MetricQueries", "dimensions", "measure", "measurements_from", "plan", "queries_for"]
