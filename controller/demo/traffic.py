"""Simulated production traffic for the demo and the tests: it plays Lambda's own metric emission.

Each beat it reads the alias's live weights and publishes, per executed version, the
``AWS/Lambda`` metrics real Lambda would: ``Invocations``, ``Errors`` and ``Duration``, with the
``FunctionName``, ``Resource`` (``function:alias``) and ``ExecutedVersion`` dimensions, plus the
alias-level aggregate (no ``ExecutedVersion``) that the seed article's alarms watch. Errors and
latency follow each version's profile, so an alarm evaluated by the emulator trips on a bad canary
in proportion to the traffic it gets, exactly as it would in AWS.

It stands on the AWS side of the demo (like the emulator), so it talks to the emulator with plain
boto3 clients rather than through the controller's adapters and budget.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class VersionProfile:
    """How a version behaves under load: the share of failed invocations and its latency."""

    error_rate: float = 0.0
    duration_ms: float = 120.0
    slow_share: float = 0.0  # share of invocations that take ``slow_ms`` (drives p99)
    slow_ms: float = 3000.0


@dataclass(frozen=True)
class Beat:
    """What one beat sent: invocations and errors per executed version."""

    invocations: Mapping[str, int]
    errors: Mapping[str, int]


class TrafficSimulator:
    """Publishes one beat of per-version metrics in proportion to the alias's current weights."""

    def __init__(
        self,
        *,
        lambda_client: Any,
        cloudwatch_client: Any,
        function: str,
        alias: str,
        profiles: Mapping[str, VersionProfile],
        requests_per_beat: int = 200,
        seed: int | None = None,
    ) -> None:
        self._lambda = lambda_client
        self._cloudwatch = cloudwatch_client
        self._function = function
        self._alias = alias
        self._profiles = dict(profiles)
        self._requests = requests_per_beat
        self._random = random.Random(seed)

    def split(self) -> dict[str, int]:
        """How many of this beat's requests each version serves, from the alias as it is now."""
        alias = self._lambda.get_alias(FunctionName=self._function, Name=self._alias)
        weights = dict(alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}))
        primary_share = 1.0 - sum(weights.values())
        shares = {alias["FunctionVersion"]: primary_share, **weights}
        return {version: round(self._requests * share) for version, share in shares.items() if share > 0}

    def beat(self, *, now: datetime | None = None) -> Beat:
        timestamp = now or datetime.now(UTC)
        invocations = self.split()
        errors: dict[str, int] = {}
        durations: list[float] = []
        data: list[dict[str, Any]] = []
        for version, count in invocations.items():
            profile = self._profiles.get(version, VersionProfile())
            failed = sum(1 for _ in range(count) if self._random.random() < profile.error_rate)
            errors[version] = failed
            version_durations = [
                profile.slow_ms if self._random.random() < profile.slow_share else profile.duration_ms
                for _ in range(count)
            ]
            durations.extend(version_durations)
            dimensions = self._dimensions(version)
            data += self._datums(dimensions, count, failed, version_durations, timestamp)
        data += self._datums(
            self._dimensions(None), sum(invocations.values()), sum(errors.values()), durations, timestamp
        )
        # PutMetricData takes at most 1000 datums a call; a beat sends a handful.
        self._cloudwatch.put_metric_data(Namespace="AWS/Lambda", MetricData=data)
        return Beat(invocations=invocations, errors=errors)

    def _dimensions(self, version: str | None) -> list[dict[str, str]]:
        dimensions = [
            {"Name": "FunctionName", "Value": self._function},
            {"Name": "Resource", "Value": f"{self._function}:{self._alias}"},
        ]
        if version is not None:
            dimensions.append({"Name": "ExecutedVersion", "Value": version})
        return dimensions

    @staticmethod
    def _datums(
        dimensions: list[dict[str, str]], count: int, failed: int, durations: list[float], timestamp: datetime
    ) -> list[dict[str, Any]]:
        common = {"Dimensions": dimensions, "Timestamp": timestamp}
        datums: list[dict[str, Any]] = [
            {"MetricName": "Invocations", "Value": count, "Unit": "Count", **common},
            {"MetricName": "Errors", "Value": failed, "Unit": "Count", **common},
        ]
        if durations:
            # Values/Counts keeps the distribution so percentile statistics stay meaningful.
            distinct = sorted(set(durations))
            datums.append(
                {
                    "MetricName": "Duration",
                    "Values": distinct,
                    "Counts": [float(durations.count(value)) for value in distinct],
                    "Unit": "Milliseconds",
                    **common,
                }
            )
        return datums
