"""Turning a LambdaRollout document that passed every check into the typed ``RolloutSpec``.

It trusts the schema and the semantic checks: by the time a document gets here its shapes and
ranges are right, so this module only renames fields, parses durations and fills defaults. The
defaults live in ``model.py``; a test keeps the CRD's ``default:`` values in step with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.document.durations import parse_duration
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    AsyncInvoke,
    AwsTarget,
    BlueGreenStrategy,
    CanaryStrategy,
    CompareToStable,
    Concurrency,
    CountMetric,
    Hook,
    Hooks,
    LinearStrategy,
    Metric,
    MetricQuery,
    Pause,
    PresetStrategy,
    Publish,
    RolloutSpec,
    SequentialTest,
    SetWeight,
    Step,
    Strategy,
    Threshold,
)
from controller.document.presets import canonical_preset_name

_DEFAULT_WARMUP_TIMEOUT = Concurrency().warmup_timeout
_DEFAULT_HOOK_TIMEOUT = Hook().timeout
_METRIC_DEFAULTS = Metric(name="", queries=())
_SEQUENTIAL_DEFAULTS = SequentialTest(name="")
# The id of a plain metric's only query (expression-based metrics name their own).
PLAIN_QUERY_ID = "m"


def _duration(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def build_rollout(document: Mapping[str, Any], *, default_namespace: str) -> RolloutSpec:
    """The ``RolloutSpec`` of a valid document."""
    metadata: Mapping[str, Any] = document.get("metadata") or {}
    spec: Mapping[str, Any] = document["spec"]
    publish = spec.get("publish")
    return RolloutSpec(
        namespace=metadata.get("namespace") or default_namespace,
        name=metadata["name"],
        generation=int(metadata.get("generation") or 0),
        function_name=spec["functionName"],
        alias=spec["alias"],
        strategy=_strategy(spec["strategy"]),
        version=spec.get("version"),
        publish=None if publish is None else Publish(publish["codeSha256"], publish.get("description")),
        analysis=_analysis(spec.get("analysis") or {}),
        concurrency=_concurrency(spec.get("concurrency")),
        async_invoke=_async_invoke(spec.get("asyncInvoke")),
        hooks=_hooks(spec.get("hooks") or {}),
        paused=bool(spec.get("paused", False)),
        progress_deadline=_duration(spec.get("progressDeadline")),
        revert_on_deletion=bool(spec.get("revertOnDeletion", False)),
        drift_policy=spec.get("driftPolicy", "Hold"),
        notifications=tuple(spec.get("notifications") or ()),
        aws=_aws(spec.get("aws")),
    )


def _aws(aws: Mapping[str, Any] | None) -> AwsTarget | None:
    if aws is None:
        return None
    return AwsTarget(role_arn=aws.get("roleArn"), external_id=aws.get("externalId"), region=aws.get("region"))


def _strategy(strategy: Mapping[str, Any]) -> Strategy:
    if "preset" in strategy:
        return PresetStrategy(canonical_preset_name(strategy["preset"]))
    if "canary" in strategy:
        return CanaryStrategy(steps=tuple(_step(step) for step in strategy["canary"]["steps"]))
    if "linear" in strategy:
        linear = strategy["linear"]
        return LinearStrategy(step_percent=linear["stepPercent"], interval=parse_duration(linear["interval"]))
    if "blueGreen" in strategy:
        blue_green = strategy["blueGreen"]
        return BlueGreenStrategy(
            preview_alias=blue_green["previewAlias"],
            previous_alias=blue_green.get("previousAlias"),
            auto_promote=bool(blue_green.get("autoPromote", False)),
            auto_promote_after=_duration(blue_green.get("autoPromoteAfter")),
        )
    return AllAtOnceStrategy()


def _step(step: Mapping[str, Any]) -> Step:
    if "setWeight" in step:
        return SetWeight(weight=step["setWeight"])
    return Pause(duration=_duration((step["pause"] or {}).get("duration")))


def _concurrency(concurrency: Mapping[str, Any] | None) -> Concurrency | None:
    if concurrency is None:
        return None
    timeout = _duration(concurrency.get("warmupTimeout"))
    return Concurrency(
        reserved=concurrency.get("reserved"),
        provisioned=concurrency.get("provisioned"),
        warmup_timeout=_DEFAULT_WARMUP_TIMEOUT if timeout is None else timeout,
    )


def _async_invoke(settings: Mapping[str, Any] | None) -> AsyncInvoke | None:
    if settings is None:
        return None
    return AsyncInvoke(
        maximum_retry_attempts=settings.get("maximumRetryAttempts"),
        maximum_event_age_seconds=settings.get("maximumEventAgeSeconds"),
        on_success=settings.get("onSuccess"),
        on_failure=settings.get("onFailure"),
    )


def _hook(hook: Mapping[str, Any] | None) -> Hook | None:
    if hook is None:
        return None
    timeout = _duration(hook.get("timeout"))
    return Hook(
        function=hook.get("function"),
        url=hook.get("url"),
        timeout=_DEFAULT_HOOK_TIMEOUT if timeout is None else timeout,
    )


def _hooks(hooks: Mapping[str, Any]) -> Hooks:
    return Hooks(
        before_allow_traffic=_hook(hooks.get("beforeAllowTraffic")),
        after_allow_traffic=_hook(hooks.get("afterAllowTraffic")),
    )


def _analysis(analysis: Mapping[str, Any]) -> Analysis:
    return Analysis(
        alarms=tuple(analysis.get("alarms", ())),
        metrics=tuple(_metric(metric) for metric in analysis.get("metrics", ())),
        sequential=tuple(_sequential(test) for test in analysis.get("sequential", ())),
        promote_early=bool(analysis.get("promoteEarly", False)),
    )


def _count(metric: Mapping[str, Any] | None, default: CountMetric) -> CountMetric:
    if metric is None:
        return default
    return CountMetric(metric_name=metric["metricName"], namespace=metric.get("namespace") or default.namespace)


def _sequential(test: Mapping[str, Any]) -> SequentialTest:
    defaults = _SEQUENTIAL_DEFAULTS
    period, delay = _duration(test.get("period")), _duration(test.get("publicationDelay"))
    return SequentialTest(
        name=test["name"],
        failures=_count(test.get("failures"), defaults.failures),
        total=_count(test.get("total"), defaults.total),
        version_dimension=test.get("versionDimension") or defaults.version_dimension,
        dimensions=tuple(sorted((str(k), str(v)) for k, v in (test.get("dimensions") or {}).items())),
        period=defaults.period if period is None else period,
        max_increase=float(test.get("maxIncrease", defaults.max_increase)),
        confidence=float(test.get("confidence", defaults.confidence)),
        negligible_rate=None if test.get("negligibleRate") is None else float(test["negligibleRate"]),
        publication_delay=defaults.publication_delay if delay is None else delay,
    )


def _query(query: Mapping[str, Any], *, id: str) -> MetricQuery:
    return MetricQuery(
        id=id,
        metric_name=query["metricName"],
        stat=query["stat"],
        namespace=query.get("namespace") or MetricQuery("", "", "").namespace,
    )


def _metric(metric: Mapping[str, Any]) -> Metric:
    if "metric" in metric:
        queries: tuple[MetricQuery, ...] = (_query(metric["metric"], id=PLAIN_QUERY_ID),)
    else:
        queries = tuple(_query(q, id=q["id"]) for q in metric["queries"])
    threshold, compare = metric.get("threshold"), metric.get("compareToStable")
    period, interval = _duration(metric.get("period")), _duration(metric.get("interval"))
    defaults = _METRIC_DEFAULTS
    return Metric(
        name=metric["name"],
        queries=queries,
        expression=metric.get("expression"),
        scope=metric.get("scope", defaults.scope),
        period=defaults.period if period is None else period,
        interval=defaults.interval if interval is None else interval,
        threshold=None if threshold is None else Threshold(max=threshold.get("max"), min=threshold.get("min")),
        compare_to_stable=None
        if compare is None
        else CompareToStable(max_ratio=compare.get("maxRatio"), max_increase=compare.get("maxIncrease")),
        failure_limit=metric.get("failureLimit", defaults.failure_limit),
        inconclusive_limit=metric.get("inconclusiveLimit", defaults.inconclusive_limit),
        min_samples=metric.get("minSamples"),
    )
