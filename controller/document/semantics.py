"""The rules a schema cannot express, checked on the raw document after (or despite) the schema.

They run on the plain dict even when the schema found errors, so the user gets every problem at
once; each check therefore looks only at values of the type it expects and skips the rest (the
schema has already reported those). The CRD repeats some of these rules as CEL for ``kubectl``,
but CEL does not run here, so this module is where they are enforced for every source.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from controller.document.durations import is_duration, parse_duration
from controller.document.errors import Path
from controller.document.names import LATEST

# Kubernetes object names: a DNS-1123 subdomain; namespaces: a DNS-1123 label.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Problem = tuple[Path, str]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def semantic_errors(document: Mapping[str, Any]) -> list[Problem]:
    """Every semantic problem of one LambdaRollout document as ``(path, message)``."""
    spec = _mapping(document.get("spec"))
    strategy = _mapping(spec.get("strategy"))
    return [
        *_metadata(document.get("metadata")),
        *_alias(spec),
        *_canary_steps(_mapping(strategy.get("canary")).get("steps")),
        *_blue_green(spec, _mapping(strategy.get("blueGreen"))),
        *_concurrency(_mapping(spec.get("concurrency"))),
        *_positive_durations(spec),
        *_metrics(spec, _mapping(spec.get("analysis")).get("metrics")),
        *_aws(spec, _mapping(spec.get("aws"))),
        *_sequential(spec, _mapping(spec.get("analysis"))),
    ]


def is_namespace(value: Any) -> bool:
    """Whether ``value`` is a valid Kubernetes namespace name (a DNS-1123 label, up to 63 characters)."""
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.match(value))


def _metadata(metadata: Any) -> Iterator[Problem]:
    if not isinstance(metadata, dict):
        yield ("metadata",), "required: a mapping with at least name"
        return
    name = metadata.get("name")
    if name is None:
        yield ("metadata", "name"), "required field is missing"
    elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        yield ("metadata", "name"), f"{name!r} is not a valid name (lowercase letters, digits, - and ., up to 253)"
    namespace = metadata.get("namespace")
    if namespace is not None and not is_namespace(namespace):
        yield ("metadata", "namespace"), f"{namespace!r} is not a valid namespace (lowercase letters, digits and -)"


def _alias(spec: Mapping[str, Any]) -> Iterator[Problem]:
    if spec.get("alias") == LATEST:
        yield ("spec", "alias"), "$LATEST is the unpublished code, not an alias; name the alias (e.g. prod)"


def _canary_steps(steps: Any) -> Iterator[Problem]:
    if not isinstance(steps, list):
        return
    base: Path = ("spec", "strategy", "canary", "steps")
    previous: tuple[int, int] | None = None  # (index, weight) of the last setWeight seen
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        weight = step.get("setWeight")
        if "pause" in step and "setWeight" not in step and previous is None:
            yield (*base, index, "pause"), "a pause before the first setWeight holds no traffic; start with a setWeight"
        if not _is_int(weight):
            continue
        path = (*base, index, "setWeight")
        if weight == 0:
            yield path, "0 sends no traffic to the new version; canary weights are 1-99"
            continue
        if weight == 100:
            yield path, "100 is not a canary step: the rollout goes to 100% by itself after the last step (use 1-99)"
        elif previous is not None and weight < previous[1]:
            earlier, earlier_weight = previous
            yield path, f"{weight} is lower than steps[{earlier}].setWeight ({earlier_weight}); weights may not go down"
        previous = (index, weight)


def _blue_green(spec: Mapping[str, Any], blue_green: Mapping[str, Any]) -> Iterator[Problem]:
    base: Path = ("spec", "strategy", "blueGreen")
    alias, preview, previous = spec.get("alias"), blue_green.get("previewAlias"), blue_green.get("previousAlias")
    if isinstance(preview, str) and preview == alias:
        yield (*base, "previewAlias"), f"must differ from spec.alias ({alias})"
    if isinstance(previous, str) and previous == alias:
        yield (*base, "previousAlias"), f"must differ from spec.alias ({alias})"
    elif isinstance(previous, str) and previous == preview:
        yield (*base, "previousAlias"), f"must differ from previewAlias ({preview})"
    if "autoPromoteAfter" in blue_green and blue_green.get("autoPromote") is not True:
        yield (*base, "autoPromoteAfter"), "needs autoPromote: true"


def _concurrency(concurrency: Mapping[str, Any]) -> Iterator[Problem]:
    reserved, provisioned = concurrency.get("reserved"), concurrency.get("provisioned")
    if _is_int(reserved) and _is_int(provisioned) and 2 * provisioned > reserved:
        # During a rollout both versions hold it, and Lambda caps their sum at the reserved value.
        yield (
            ("spec", "concurrency", "provisioned"),
            f"{provisioned} is more than half of concurrency.reserved ({reserved})",
        )


def _positive_durations(spec: Mapping[str, Any]) -> Iterator[Problem]:
    """Durations that bound a wait: zero would make the rollout fail or skip at once."""
    hooks = _mapping(spec.get("hooks"))
    linear = _mapping(_mapping(spec.get("strategy")).get("linear"))
    candidates: list[tuple[Path, Any]] = [
        (("spec", "progressDeadline"), spec.get("progressDeadline")),
        (("spec", "strategy", "linear", "interval"), linear.get("interval")),
        (("spec", "concurrency", "warmupTimeout"), _mapping(spec.get("concurrency")).get("warmupTimeout")),
        *((("spec", "hooks", name, "timeout"), _mapping(hooks.get(name)).get("timeout")) for name in hooks),
    ]
    metrics = _mapping(spec.get("analysis")).get("metrics")
    for index, metric in enumerate(metrics if isinstance(metrics, list) else []):
        candidates.append((("spec", "analysis", "metrics", index, "interval"), _mapping(metric).get("interval")))
    for path, value in candidates:
        if isinstance(value, str) and is_duration(value) and parse_duration(value) <= 0:
            yield path, f"{value!r} must be longer than 0s"


# Query ids in metric math: lowercase-first identifiers (CloudWatch's functions are upper case).
_QUERY_ID = re.compile(r"\b[a-z][a-zA-Z0-9_]*\b")
_SHORT_PERIODS = (1, 5, 10, 30)


def _metrics(spec: Mapping[str, Any], metrics: Any) -> Iterator[Problem]:
    if not isinstance(metrics, list):
        return
    seen: dict[str, int] = {}
    blue_green = "blueGreen" in _mapping(spec.get("strategy"))
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            continue
        base: Path = ("spec", "analysis", "metrics", index)
        name = metric.get("name")
        if isinstance(name, str):
            if name in seen:
                yield (*base, "name"), f"{name!r} is also the name of metrics[{seen[name]}]"
            seen.setdefault(name, index)
        if "threshold" not in metric and "compareToStable" not in metric:
            yield base, "needs threshold or compareToStable: a measurement must be able to fail"
        if "compareToStable" in metric and metric.get("scope", "canary") != "canary":
            yield (*base, "compareToStable"), "compares the canary with stable: needs scope canary"
        yield from _expression(base, metric)
        period = metric.get("period")
        if not _cloudwatch_period(period):
            yield (*base, "period"), f"{period!r} is not a CloudWatch period: 1s, 5s, 10s, 30s or a multiple of 60s"
        if blue_green:
            yield base, "blueGreen gives the new version no partial traffic to measure; use a weight strategy"


def _cloudwatch_period(value: Any, *, whole_milliseconds: bool = False) -> bool:
    """``value`` is not a duration (the schema says so) or one CloudWatch accepts as a period.

    ``whole_milliseconds``: a long period is judged on its whole milliseconds, exactly as the CRD's CEL
    rule (``getMilliseconds``) judges it, so both sides agree on every string.
    """
    if not (isinstance(value, str) and is_duration(value)):
        return True
    seconds = parse_duration(value)
    if seconds in _SHORT_PERIODS:
        return True
    if whole_milliseconds:
        return seconds >= 60 and int(seconds * 1000) % 60_000 == 0
    return seconds >= 60 and seconds % 60 == 0


def _sequential(spec: Mapping[str, Any], analysis: Mapping[str, Any]) -> Iterator[Problem]:
    tests = analysis.get("sequential")
    tests = tests if isinstance(tests, list) else []
    base: Path = ("spec", "analysis")
    if analysis.get("promoteEarly") is True and not tests:
        yield (*base, "promoteEarly"), 'needs analysis.sequential: without a test nothing can prove "no regression"'
    if tests and "blueGreen" in _mapping(spec.get("strategy")):
        yield (*base, "sequential"), "blueGreen gives the new version no partial traffic to compare with stable"
    seen: dict[str, int] = {}
    for index, test in enumerate(tests):
        if not isinstance(test, dict):
            continue
        path: Path = (*base, "sequential", index)
        name = test.get("name")
        if isinstance(name, str):
            if name in seen:
                yield (*path, "name"), f"{name!r} is also the name of sequential[{seen[name]}]"
            seen.setdefault(name, index)
        period = test.get("period")
        if not _cloudwatch_period(period, whole_milliseconds=True):
            yield (*path, "period"), f"{period!r} is not a CloudWatch period: 1s, 5s, 10s, 30s or a multiple of 60s"
        dimensions, version = test.get("dimensions"), test.get("versionDimension", "ExecutedVersion")
        if isinstance(dimensions, dict) and isinstance(version, str) and version in dimensions:
            yield (*path, "dimensions"), f"must not name versionDimension ({version}), which is set to each version"


def _expression(base: Path, metric: Mapping[str, Any]) -> Iterator[Problem]:
    queries, expression = metric.get("queries"), metric.get("expression")
    if "metric" in metric and "expression" in metric:
        yield (*base, "expression"), "goes with queries, not with metric"
    if isinstance(queries, list) and "expression" not in metric:
        yield (*base, "expression"), "required with queries: it says how they combine"
    if not isinstance(queries, list):
        return
    ids = [q.get("id") for q in queries if isinstance(q, dict)]
    for position, query_id in enumerate(ids):
        if isinstance(query_id, str) and query_id in ids[:position]:
            yield (*base, "queries", position, "id"), f"{query_id!r} is used by another query"
    if isinstance(expression, str):
        unknown = sorted({token for token in _QUERY_ID.findall(expression) if token not in ids})
        if unknown:
            yield (*base, "expression"), f"unknown query id {', '.join(unknown)} (queries: {', '.join(map(str, ids))})"


_FUNCTION_ARN = re.compile(r"^arn:[^:]+:lambda:([^:]+):([0-9]{12}):function:")
_ROLE_ACCOUNT = re.compile(r"^arn:[^:]+:iam::([0-9]{12}):role/")


def _aws(spec: Mapping[str, Any], aws: Mapping[str, Any]) -> Iterator[Problem]:
    """``spec.aws`` agrees with itself and with a function named by ARN (which says where it lives)."""
    base: Path = ("spec", "aws")
    role, region = aws.get("roleArn"), aws.get("region")
    if "externalId" in aws and "roleArn" not in aws:
        yield (*base, "externalId"), "an external ID is only sent when assuming a role; set roleArn too"
    name = spec.get("functionName")
    where = _FUNCTION_ARN.match(name) if isinstance(name, str) else None
    if where is None:
        return
    function_region, function_account = where.group(1), where.group(2)
    if isinstance(region, str) and region != function_region:
        yield (*base, "region"), f"{region} is not the region of spec.functionName ({function_region})"
    role_account = _ROLE_ACCOUNT.match(role) if isinstance(role, str) else None
    if role_account is not None and role_account.group(1) != function_account:
        yield (
            (*base, "roleArn"),
            f"a role of account {role_account.group(1)}, but spec.functionName is in account {function_account}",
        )
