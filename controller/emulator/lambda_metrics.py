"""Lambda's own metrics, made by invocations as Lambda makes them, and how each version behaves.

AWS refuses ``PutMetricData`` into ``AWS/...`` namespaces: ``AWS/Lambda`` ``Invocations``, ``Errors``
and ``Duration`` exist only because functions are invoked. A controller that judges a canary by
those metrics must be tested against traffic that produces them the same way, through weighted alias
routing decided per request, not against numbers a test writes where Lambda would. This module is
that side of the emulator:

* :class:`Behaviour` is how one version of a function answers (failure rate, latency, an optional fixed
  payload, optionally a real sleep); the emulator's control endpoint sets it (``POST
  /_emulator/lambda/behaviour``), since without Docker no function code runs;
* :func:`route` picks the version an alias invocation runs: the additional version with its weight,
  else the primary, drawn per request as Lambda does;
* :class:`InvocationMetrics` records every invocation in the dimension sets Lambda publishes: none
  (all functions), ``{FunctionName}``, ``{FunctionName, Resource}`` for a qualified invocation
  (``Resource`` = ``function:alias`` or ``function:version``) and, for an alias invocation,
  ``{FunctionName, Resource, ExecutedVersion}``. ``Invocations`` is 1 and ``Errors`` 0 or 1 per
  invocation, ``Duration`` the milliseconds it took, so ``Sum`` counts and ``pNN`` works.

Invocations are aggregated per :data:`RESOLUTION_US` (a tenth of a second) per dimension set, keeping
the distribution of durations for percentiles: a demo at 200 requests a second adds a few hundred
records a second, not thousands of datapoints. moto reads them through its metric-provider hook
(``ListMetrics``, ``GetMetricStatistics``); the emulator's ``GetMetricData`` and alarm evaluation read
the per-series index directly.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import MetricAggregatedDatum
from moto.core.common_models import CloudWatchMetricProvider

NAMESPACE = "AWS/Lambda"
#: Invocations falling in the same tenth of a second are one record per dimension set.
RESOLUTION_US = 100_000
#: One traffic request simulates at most this many invocations.
MAX_TRAFFIC = 200_000
_UNITS = {"Invocations": "Count", "Errors": "Count", "Duration": "Milliseconds"}

Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Behaviour:
    """How one version answers: ``error_rate`` of its invocations fail (``FunctionError: Unhandled``).

    Each invocation takes ``duration_ms``, or ``slow_ms`` for a ``slow_share`` of them (what moves
    p99). ``payload`` is returned instead of the request's payload; ``sleep`` makes Invoke really wait
    the duration (capped by the ``invoke_sleep_cap`` setting) so callers feel the latency too.
    """

    error_rate: float = 0.0
    duration_ms: float = 100.0
    slow_share: float = 0.0
    slow_ms: float = 0.0
    payload: str | None = None
    sleep: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Behaviour:
        """Built from the control endpoint's JSON; unknown fields and out-of-range values raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown behaviour fields: {', '.join(unknown)}")
        behaviour = cls(**data)
        for name in ("error_rate", "slow_share"):
            if not 0.0 <= float(getattr(behaviour, name)) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("duration_ms", "slow_ms"):
            if float(getattr(behaviour, name)) < 0:
                raise ValueError(f"{name} must not be negative")
        return behaviour

    def draw(self, rng: random.Random) -> tuple[bool, float]:
        """(failed, duration in ms) of one invocation."""
        failed = rng.random() < self.error_rate
        slow = self.slow_share > 0 and rng.random() < self.slow_share
        return failed, float(self.slow_ms if slow else self.duration_ms)


def route(primary: str, weights: dict[str, float], rng: random.Random) -> str:
    """The version one alias invocation runs: Lambda draws it per request from the routing weights."""
    draw = rng.random()
    for version, weight in weights.items():
        if draw < float(weight):
            return version
        draw -= float(weight)
    return primary


@dataclass(frozen=True)
class Invocation:
    """One invocation as Lambda reports it: when, which function and qualifier, what ran, how it went."""

    timestamp: float
    function: str
    resource: str | None  # "function:alias" or "function:version" when the invocation was qualified
    executed_version: str | None  # set for alias invocations only, as Lambda's dimension is
    failed: bool
    duration_ms: float

    def dimension_sets(self) -> list[Dimensions]:
        """Every dimension set Lambda publishes this invocation under (each sorted by name)."""
        function = ("FunctionName", self.function)
        sets: list[tuple[tuple[str, str], ...]] = [(), (function,)]
        if self.resource is not None:
            resource = ("Resource", self.resource)
            sets.append((function, resource))
            if self.executed_version is not None:
                sets.append((function, resource, ("ExecutedVersion", self.executed_version)))
        return [tuple(sorted(dims)) for dims in sets]


@dataclass(slots=True)
class Slot:
    """One tenth of a second of one metric in one dimension set: the statistic set and its values."""

    timestamp_us: int
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    values: Counter[float] = field(default_factory=Counter)

    def add(self, value: float, count: int = 1) -> None:
        self.count += count
        self.total += value * count
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.values[value] += count

    def merged(self, other: Slot) -> Slot:
        """A new slot holding both (slots in the index are replaced, never changed: readers need no lock)."""
        values = Counter(self.values)
        values.update(other.values)
        return Slot(
            self.timestamp_us,
            self.count + other.count,
            self.total + other.total,
            min(self.low, other.low),
            max(self.high, other.high),
            values,
        )

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_us / 1_000_000, UTC)


def _timestamp_us(epoch_seconds: float) -> int:
    return round(epoch_seconds * 1_000_000)


class InvocationMetrics(CloudWatchMetricProvider):
    """Every account's and region's Lambda invocation metrics, indexed by series.

    A module-level store because moto asks metric providers through a static method; the emulator's
    reset clears it with moto's state.
    """

    _lock = threading.Lock()
    # (account, region) -> (metric, dimensions) -> slot start (µs) -> Slot
    _series: dict[tuple[str, str], dict[tuple[str, Dimensions], dict[int, Slot]]] = {}

    @classmethod
    def record(cls, account: str, region: str, invocations: Iterable[Invocation]) -> None:
        batch: dict[tuple[str, Dimensions], dict[int, Slot]] = {}
        for invocation in invocations:
            slot_us = _timestamp_us(invocation.timestamp) // RESOLUTION_US * RESOLUTION_US
            values = (
                ("Invocations", 1.0),
                ("Errors", 1.0 if invocation.failed else 0.0),
                ("Duration", invocation.duration_ms),
            )
            for dimensions in invocation.dimension_sets():
                for metric, value in values:
                    slots = batch.setdefault((metric, dimensions), {})
                    slots.setdefault(slot_us, Slot(slot_us)).add(value)
        with cls._lock:
            store = cls._series.setdefault((account, region), {})
            for key, slots in batch.items():
                existing = store.setdefault(key, {})
                for slot_us, slot in slots.items():
                    old = existing.get(slot_us)
                    existing[slot_us] = slot if old is None else old.merged(slot)

    @classmethod
    def slots(cls, account: str, region: str, metric: str, dimensions: Iterable[tuple[str, str]]) -> list[Slot]:
        """The records of one series (exact dimension match, as CloudWatch matches), oldest first."""
        key = (metric, tuple(sorted(dimensions)))
        with cls._lock:
            found = cls._series.get((account, region), {}).get(key)
            return [found[k] for k in sorted(found)] if found else []

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._series.clear()

    @staticmethod
    def get_cloudwatch_metrics(account_id: str, region: str) -> list[MetricAggregatedDatum]:
        """moto's hook (``ListMetrics``, ``GetMetricStatistics``): the records as statistic sets."""
        return list(_as_datums(account_id, region))


def _as_datums(account: str, region: str) -> Iterator[MetricAggregatedDatum]:
    with InvocationMetrics._lock:
        series = {
            key: list(slots.values()) for key, slots in InvocationMetrics._series.get((account, region), {}).items()
        }
    for (metric, dimensions), slots in series.items():
        for slot in slots:
            yield MetricAggregatedDatum(
                namespace=NAMESPACE,
                name=metric,
                min_stat=slot.low,
                max_stat=slot.high,
                sample_count=float(slot.count),
                sum_stat=slot.total,
                dimensions=[{"Name": name, "Value": value} for name, value in dimensions],
                timestamp=slot.timestamp.replace(tzinfo=None),
                unit=_UNITS[metric],
            )
