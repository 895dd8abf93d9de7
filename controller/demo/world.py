"""The demo's AWS side: the ``brand-api`` function, its three versions, the alarms and the documents.

Everything here is what a team would already have in its account before adopting the controller:
a function with published versions, an alias in front of it, and the two rollback alarms of the
canary article the project started from (error count and p99 latency on the ``prod`` alias, 60 s
periods as Lambda's one-minute metrics want). Only the clock of the alarms is sped up: the story
sets the emulator's ``alarm_period_scale`` so that each 60 s period lasts one second, and the alarms
react within seconds. The error alarm is set for the alias as a whole, above its everyday noise, as
alias-level alarms must be: a small canary failing half its calls stays under it. The rollout document
adds what the alarms cannot do: a sequential test comparing version against version on Lambda's own
``Errors`` and ``Invocations``, on one-second periods (the same sixty-fold clock as the alarms'), which
catches that canary within a period or two and, with ``promoteEarly``, lets a good one through early.

It talks to AWS with plain boto3 clients, like the traffic simulator and unlike the controller: it
plays the team and the account, not the controller, so the controller's adapters and API budget do
not apply to it. It works against any endpoint (the in-process emulator, or one a test started).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

from controller.demo.traffic import VersionProfile
from controller.emulator.server import LAMBDA_TRUST_POLICY, zip_code

FUNCTION = "brand-api"
ALIAS = "prod"
ROLLOUT = "brand-api"
NAMESPACE = "demo"
ROLE = "brand-api-demo-role"
DOCUMENT = "brand-api.yaml"
ERROR_ALARM = "brand-api-error-rate-canary"
LATENCY_ALARM = "brand-api-p99-latency-canary"
ALARMS = (ERROR_ALARM, LATENCY_ALARM)
# Lambda publishes per minute: its alarms have periods of 60 s. The emulator runs them 60 times faster.
ALARM_PERIOD = 60
ALARM_PERIOD_SCALE = 1 / 60

# The alias's error alarm: more than this many errors in a period, at 200 calls a period (12.5%).
ERROR_THRESHOLD = 25.0
# The sequential test of the document: Lambda's Errors over Invocations, one-second periods published
# at once (the emulator's metrics are per tenth of a second), passing a canary proven to fail less than 1%
# (versions 1 and 2 never fail, and a stable version without failures alone proves nothing).
SEQUENTIAL_TEST = {"name": "errors", "period": "1s", "publicationDelay": "0s", "negligibleRate": 0.01}

# Version 1 and 2 are healthy; version 3 fails half its calls: at 10% of the alias, 10 errors a
# period, under the alias's alarm, but every failure on the canary and none on stable.
PROFILES: dict[str, VersionProfile] = {
    "1": VersionProfile(error_rate=0.0, duration_ms=120.0),
    "2": VersionProfile(error_rate=0.0, duration_ms=95.0),
    "3": VersionProfile(error_rate=0.5, duration_ms=140.0),
}
DESCRIPTIONS = {
    "1": "v2.0.0 - logo lookup",
    "2": "v2.1.0 - faster logo lookup with DynamoDB cache",
    "3": "v2.2.0 - new image pipeline (has a bug)",
}


@dataclass(frozen=True)
class Clients:
    """The boto3 clients of the account the demo plays in."""

    lambda_: Any
    cloudwatch: Any
    iam: Any

    @classmethod
    def for_endpoint(cls, endpoint_url: str, *, region: str) -> Clients:
        def client(service: str) -> Any:
            # Any credentials do for the emulator; real ones are never needed or read.
            return boto3.client(
                service,
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id="demo",
                aws_secret_access_key="demo",
            )

        return cls(lambda_=client("lambda"), cloudwatch=client("cloudwatch"), iam=client("iam"))


class WorldExists(Exception):
    """The account already has the demo's function: the story would not be the one it tells."""


def create_world(clients: Clients) -> None:
    """The function with versions 1-3, the alarms, and ``prod`` on version 1 (no controller yet)."""
    role = _role(clients.iam)
    lam = clients.lambda_
    try:
        lam.create_function(
            FunctionName=FUNCTION,
            Runtime="python3.12",
            Role=role,
            Handler="lambda_function.handler",
            Code={"ZipFile": _code("1")},
            Description="brand logos for the storefront",
        )
    except lam.exceptions.ResourceConflictException:
        raise WorldExists(
            f"the emulator at {lam.meta.endpoint_url} already has function {FUNCTION} (from an earlier demo?): "
            f"start a fresh one, or reset it with POST {lam.meta.endpoint_url}/moto-api/reset"
        ) from None
    for version in sorted(PROFILES):
        if version != "1":
            lam.update_function_code(FunctionName=FUNCTION, ZipFile=_code(version))
        lam.publish_version(FunctionName=FUNCTION, Description=DESCRIPTIONS[version])
    lam.create_alias(FunctionName=FUNCTION, Name=ALIAS, FunctionVersion="1", Description="Production alias")
    for alarm in alarm_definitions():
        clients.cloudwatch.put_metric_alarm(**alarm)


def _role(iam: Any) -> str:
    try:
        return str(iam.get_role(RoleName=ROLE)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        return str(iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=LAMBDA_TRUST_POLICY)["Role"]["Arn"])


def _code(version: str) -> bytes:
    return zip_code(f"def handler(event, context):\n    return {{'logo': 'brand.svg', 'build': {version}}}\n")


def alarm_definitions() -> list[dict[str, Any]]:
    """The seed article's two alarms on the alias: one 60 s period each, errors above the alias's noise."""
    dimensions = [{"Name": "FunctionName", "Value": FUNCTION}, {"Name": "Resource", "Value": f"{FUNCTION}:{ALIAS}"}]
    common: dict[str, Any] = {
        "Namespace": "AWS/Lambda",
        "Dimensions": dimensions,
        "Period": ALARM_PERIOD,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanThreshold",
    }
    return [
        {**common, "AlarmName": ERROR_ALARM, "MetricName": "Errors", "Statistic": "Sum", "Threshold": ERROR_THRESHOLD},
        {
            **common,
            "AlarmName": LATENCY_ALARM,
            "MetricName": "Duration",
            "ExtendedStatistic": "p99",
            "Threshold": 2000.0,
        },
    ]


def rollout_document(*, version: str, pause_seconds: float) -> dict[str, Any]:
    """The LambdaRollout the team keeps in git: a short canary watched by both alarms and judged by a
    sequential test of its errors against stable's, which may end a pause early."""
    pause = {"pause": {"duration": f"{pause_seconds:g}s"}}
    return {
        "apiVersion": "lambda.rollouts.dev/v1alpha1",
        "kind": "LambdaRollout",
        "metadata": {"name": ROLLOUT, "namespace": NAMESPACE},
        "spec": {
            "functionName": FUNCTION,
            "alias": ALIAS,
            "version": version,
            "strategy": {"canary": {"steps": [{"setWeight": 10}, pause, {"setWeight": 50}, pause]}},
            "analysis": {"alarms": list(ALARMS), "sequential": [SEQUENTIAL_TEST], "promoteEarly": True},
        },
    }


def commit(directory: Path, *, version: str, pause_seconds: float) -> Path:
    """Write the document as a GitOps commit would land it: a new file replaces the old one at once."""
    path = directory / DOCUMENT
    staged = directory / f".{DOCUMENT}.tmp"  # not a *.yaml: the source never sees it half-written
    staged.write_text(yaml.safe_dump(rollout_document(version=version, pause_seconds=pause_seconds), sort_keys=False))
    staged.replace(path)
    return path


def alarm_states(clients: Clients) -> dict[str, str]:
    """The watched alarms' states, by name."""
    response = clients.cloudwatch.describe_alarms(AlarmNames=list(ALARMS))
    return {alarm["AlarmName"]: alarm["StateValue"] for alarm in response["MetricAlarms"]}
