"""Metric queries: ``spec.analysis.metrics`` and the counts of ``spec.analysis.sequential``, read for
every rollout of a tick in one batched read.

Their cost must not grow with the number of rollouts: every measurement and every sequential period
due in a tick, for all rollouts, is one ``GetMetricData`` call (up to 500 queries; more calls only
beyond that). The core says which metrics are due (``controller.core.metric_analysis.due_metrics``)
and which periods of which sequential test (``controller.core.sequential_analysis.due_tests``);
``plan`` and ``plan_looks`` build their queries, ``measure`` makes the call through
``CloudWatchAdapter.get_metric_data`` and hands back one ``Measurement`` per metric and the
``Look`` s of each test; the core judges them. ``MetricQueries`` is the analysis provider around it
(``controller.analysis``).

A sequential test reads four sums per period: failures and total, canary and stable. ``AWS/Lambda``
metrics are scoped by Lambda's own dimensions (``FunctionName``, ``Resource`` = ``function:alias``,
``ExecutedVersion``); custom ones by the test's ``versionDimension`` = the version plus its
``dimensions``. Only complete periods are handed over: a period is planned once it is published (the
core adds the test's ``publicationDelay``), and one with more failures than requests, for either
version, is not published whole yet: it and the periods after it are read again on a later tick
(looks are folded in time order, each once). A period without datapoints has no requests: a look
that carries no evidence, never a pass.

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
from controller.core.sequential import Look
from controller.core.sequential_analysis import due_tests, fingerprint
from controller.core.sequential_analysis import period_of as sequential_period
from controller.core.types import Measurement, Record, SequentialLooks
from controller.document.model import LAMBDA_NAMESPACE, CountMetric, Metric, MetricQuery, RolloutSpec, SequentialTest
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


@dataclass(frozen=True)
class _PlannedLooks:
    """The periods of one sequential test of one rollout: where their four sums will be."""

    key: str
    test: SequentialTest
    version: str
    stable: str
    starts: tuple[float, ...]
    period: int
    prefix: str  # query ids: <prefix>f|n (failures, total) then c|s (canary, stable)

    @property
    def start(self) -> float:
        return self.starts[0]

    @property
    def end(self) -> float:
        return self.starts[-1] + self.period


def dimensions(spec: RolloutSpec, version: str | None) -> list[dict[str, str]]:
    """Lambda's per-version dimensions (``version`` None: the whole alias)."""
    function = function_name_of(spec.function_name)
    dims = [{"Name": "FunctionName", "Value": function}, {"Name": "Resource", "Value": f"{function}:{spec.alias}"}]
    if version is not None:
        dims.append({"Name": "ExecutedVersion", "Value": version})
    return dims


def count_dimensions(
    spec: RolloutSpec, test: SequentialTest, metric: CountMetric, version: str
) -> list[dict[str, str]]:
    """Where ``version``'s ``metric`` is: Lambda's own dimensions for ``AWS/Lambda``, else the test's."""
    if metric.namespace == LAMBDA_NAMESPACE:
        return dimensions(spec, version)
    extra = [{"Name": name, "Value": value} for name, value in test.dimensions]
    return [*extra, {"Name": test.version_dimension, "Value": version}]


def _count(query_id: str, metric: CountMetric, dims: list[dict[str, str]], period: int) -> dict[str, Any]:
    stat = {"Metric": {"Namespace": metric.namespace, "MetricName": metric.metric_name, "Dimensions": dims}}
    return {"Id": query_id, "MetricStat": {**stat, "Period": period, "Stat": "Sum"}, "ReturnData": True}


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


def plan_looks(
    items: Sequence[tuple[RolloutSpec, Record]], *, now: float, time_scale: float = 1.0
) -> tuple[list[list[dict[str, Any]]], list[_PlannedLooks]]:
    """The query groups (one query each) of every sequential period due, and where their sums will be."""
    groups: list[list[dict[str, Any]]] = []
    planned: list[_PlannedLooks] = []
    for r, (spec, record) in enumerate(items):
        for test, starts in due_tests(spec, record, now, time_scale=time_scale):
            assert record.canary is not None and record.stable is not None
            t = spec.analysis.sequential.index(test)
            period = sequential_period(test, time_scale=time_scale)
            prefix = f"r{r}q{t}"
            for kind, metric in (("f", test.failures), ("n", test.total)):
                for side, version in (("c", record.canary), ("s", record.stable)):
                    dims = count_dimensions(spec, test, metric, version)
                    groups.append([_count(f"{prefix}{kind}{side}", metric, dims, period)])
            planned.append(_PlannedLooks(spec.key, test, record.canary, record.stable, starts, period, prefix))
    return groups, planned


def _sum(series: Series, query_id: str, start: float) -> int:
    # CloudWatch sums counts as floats; a period without a datapoint had none.
    return max(0, round(series.get(query_id, {}).get(start, 0.0)))


def looks_from(series: Series, planned: Sequence[_PlannedLooks]) -> dict[str, dict[str, SequentialLooks]]:
    """Each planned test's complete periods, in time order, up to the first one not published whole."""
    out: dict[str, dict[str, SequentialLooks]] = {}
    for item in planned:
        looks: list[Look] = []
        for start in item.starts:
            counts = {
                f"{kind}{side}": _sum(series, f"{item.prefix}{kind}{side}", start) for kind in "fn" for side in "cs"
            }
            if counts["fc"] > counts["nc"] or counts["fs"] > counts["ns"]:
                break  # more failures than requests: not published whole yet; read again later
            looks.append(
                Look(
                    start=start,
                    end=start + item.period,
                    canary_requests=counts["nc"],
                    canary_failures=counts["fc"],
                    stable_requests=counts["ns"],
                    stable_failures=counts["fs"],
                )
            )
        if looks:
            found = SequentialLooks(fingerprint(item.test), item.version, item.stable, tuple(looks))
            out.setdefault(item.key, {})[item.test.name] = found
    return out


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


def _due(spec: RolloutSpec, record: Record, now: float, *, time_scale: float, thresholds: bool = True) -> bool:
    metrics = thresholds and bool(due_metrics(spec, record, now, time_scale=time_scale))
    return metrics or bool(due_tests(spec, record, now, time_scale=time_scale))


async def measure(
    cloudwatch: CloudWatchAdapter,
    items: Sequence[tuple[RolloutSpec, Record]],
    *,
    now: float,
    time_scale: float = 1.0,
    thresholds: bool = True,
) -> dict[str, Evidence]:
    """Every measurement and sequential period due at ``now`` for ``items``, in one batched read (no
    call if none is due), as evidence by rollout key; ``thresholds`` False: the sequential periods only."""
    groups, planned = plan(items, now=now, time_scale=time_scale) if thresholds else ([], [])
    look_groups, looks_planned = plan_looks(items, now=now, time_scale=time_scale)
    windows = [(p.start, p.end) for p in planned] + [(p.start, p.end) for p in looks_planned]
    if not windows:
        return {}
    start, end = min(w[0] for w in windows), max(w[1] for w in windows)
    try:
        series = await cloudwatch.get_metric_data([*groups, *look_groups], start=start, end=end)
    except AwsError as exc:
        logger.warning("metric analysis: GetMetricData failed, measuring again next tick: %s", exc)
        return {}
    measured, looks = measurements_from(series, planned, now=now), looks_from(series, looks_planned)
    return {
        key: Evidence(measurements=measured.get(key, {}), looks=looks.get(key, {}))
        for key in dict.fromkeys([*measured, *looks])
    }


class MetricQueries:
    """``spec.analysis.metrics`` and ``spec.analysis.sequential`` as an analysis provider: one batched
    GetMetricData per tick for all.

    At most one batch is in flight. A tick waits ``wait`` seconds for it; a slower answer is taken by
    a later tick (each measurement keeps its own time and window), so a slow CloudWatch holds back no
    alarm and no other rollout. ``thresholds`` False reads the sequential periods only (``plan``).
    """

    def __init__(
        self, cloudwatch: CloudWatchAdapter, *, time_scale: float = 1.0, wait: float = 1.0, thresholds: bool = True
    ) -> None:
        self._cloudwatch = cloudwatch
        self._time_scale = time_scale
        self._wait = wait
        self._thresholds = thresholds
        self._batch: asyncio.Task[dict[str, Evidence]] | None = None

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        if self._batch is None:
            items = [
                (s.spec, s.record)
                for s in subjects
                if s.record is not None
                and _due(s.spec, s.record, now, time_scale=self._time_scale, thresholds=self._thresholds)
            ]
            if not items:
                return {}
            self._batch = asyncio.create_task(
                measure(self._cloudwatch, items, now=now, time_scale=self._time_scale, thresholds=self._thresholds),
                name="measure",
            )
        done, _ = await asyncio.wait({self._batch}, timeout=None if wait else self._wait)
        if not done:
            return {}
        batch, self._batch = self._batch, None
        return batch.result()

    def close(self) -> None:
        """Stop a batch still in flight (the engine stops)."""
        if self._batch is not None:
            self._batch.cancel()
            self._batch = None


__all__ = [
    "Measurements",
    "MetricQueries",
    "count_dimensions",
    "dimensions",
    "looks_from",
    "measure",
    "measurements_from",
    "plan",
    "plan_looks",
    "queries_for",
]
