"""Rollout documents and the errors alarm that test worlds (and the benchmark) start from.

Kept apart from ``helpers`` because it imports neither the emulator nor moto: ``bench/ticks.py``
seeds its subprocess emulator with these, and must not load (and be measured with) what it does
not run. The AWS-facing helper takes a boto3 client for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml


def rollout_document(
    name: str,
    *,
    function: str,
    version: str,
    strategy: dict[str, Any],
    alias: str = "live",
    alarms: Iterable[str] = (),
    namespace: str = "default",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"functionName": function, "alias": alias, "version": version, "strategy": strategy}
    if alarms:
        spec["analysis"] = {"alarms": list(alarms)}
    return {
        "apiVersion": "lambda.rollouts.dev/v1alpha1",
        "kind": "LambdaRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def write_document(directory: Path, document: dict[str, Any], filename: str | None = None) -> Path:
    path = directory / (filename or f"{document['metadata']['name']}.yaml")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def canary(*weights_and_pauses: int | float | None) -> dict[str, Any]:
    """``canary(10, 5, 50, 5)``: setWeight 10, pause 5 s, ... (``None`` = a pause until promote)."""
    steps: list[dict[str, Any]] = []
    for index, value in enumerate(weights_and_pauses):
        if index % 2 == 0:
            steps.append({"setWeight": value})
        else:
            steps.append({"pause": {} if value is None else {"duration": f"{value}s"}})
    return {"canary": {"steps": steps}}


def put_errors_alarm(cloudwatch: Any, name: str, *, function: str | None = None, **overrides: Any) -> None:
    """An alarm on Lambda ``Errors`` (Sum over 60 s, at least 1), optionally for one ``function``.

    Takes a boto3 CloudWatch client rather than the emulator so the benchmark can seed through its own.
    ``overrides`` are further ``PutMetricAlarm`` parameters (``TreatMissingData``, ``Threshold``...).
    """
    params: dict[str, Any] = {
        "AlarmName": name,
        "MetricName": "Errors",
        "Namespace": "AWS/Lambda",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    if function is not None:
        params["Dimensions"] = [{"Name": "FunctionName", "Value": function}]
    cloudwatch.put_metric_alarm(**(params | overrides))


def paused_rollout_document(name: str, *, namespace: str = "default") -> dict[str, Any]:
    """``name`` 1 -> 2 watching ``<name>-errors``, waiting for ``promote`` at 10%: the idle rollout of cost checks."""
    return rollout_document(
        name,
        function=name,
        version="2",
        strategy=canary(10, None, 50, None),
        alarms=[f"{name}-errors"],
        namespace=namespace,
    )
