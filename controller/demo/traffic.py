"""Simulated production traffic for the demo and the tests: clients invoking the alias, as real ones do.

AWS refuses ``PutMetricData`` into ``AWS/Lambda``: Lambda's ``Invocations``, ``Errors`` and ``Duration``
exist because functions are invoked, per executed version when an alias routes by weights. So the
simulator does not write metrics. It tells the emulator how each version behaves (failure rate,
latency: there is no function code to run without Docker) and then invokes ``function:alias``, many
requests per beat through the emulator's traffic endpoint (its own shortcut for N Invokes in one
request; see docs/emulator.md). The emulator routes each request by the alias's live weights, answers
as that version's profile says, and records Lambda's metrics with the ``FunctionName``, ``Resource``
and ``ExecutedVersion`` dimensions, so an alarm trips on a bad canary in proportion to the traffic it
really gets, exactly as in AWS.

It stands on the AWS side of the demo (like the emulator), so it talks to the emulator directly
rather than through the controller's adapters and budget.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from controller.emulator.control import EmulatorControl


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
    """Invokes ``function:alias`` a number of times per beat, each version answering as its profile says."""

    def __init__(
        self,
        *,
        endpoint: str,
        function: str,
        alias: str,
        profiles: Mapping[str, VersionProfile],
        requests_per_beat: int = 200,
        region: str = "us-east-1",
        seed: int | None = None,
    ) -> None:
        self._control = EmulatorControl(endpoint, region=region)
        self._function = function
        self._alias = alias
        self._profiles = dict(profiles)
        self._requests = requests_per_beat
        # Seeded: every beat's routing and failures repeat from run to run.
        self._random = random.Random(seed) if seed is not None else None

    def apply_profiles(self) -> None:
        """Tell the emulator how each version answers (once, before the first beat)."""
        for version, profile in self._profiles.items():
            self._control.set_behaviour(
                self._function,
                version,
                error_rate=profile.error_rate,
                duration_ms=profile.duration_ms,
                slow_share=profile.slow_share,
                slow_ms=profile.slow_ms,
            )

    def beat(self, *, now: datetime | None = None, requests: int | None = None) -> Beat:
        """``requests`` invocations of the alias (default ``requests_per_beat``), at ``now`` (default: now)."""
        result = self._control.traffic(
            self._function,
            self._alias,
            count=self._requests if requests is None else requests,
            at=now.timestamp() if now is not None else None,
            seed=self._random.randrange(2**31) if self._random is not None else None,
        )
        return Beat(invocations=result.invocations, errors=result.errors)


class LastSecond:
    """The beats of the last second, summed: what the demo's traffic panel shows."""

    def __init__(self, *, window: float = 1.0) -> None:
        self._window = window
        self._beats: deque[tuple[float, Beat]] = deque()

    def add(self, at: float, beat: Beat) -> Beat:
        """Add ``beat`` (sent at ``at``, epoch seconds); returns the sum of the beats within the window."""
        self._beats.append((at, beat))
        while self._beats and self._beats[0][0] <= at - self._window:
            self._beats.popleft()
        invocations: dict[str, int] = {}
        errors: dict[str, int] = {}
        for _, seen in self._beats:
            for version, count in seen.invocations.items():
                invocations[version] = invocations.get(version, 0) + count
            for version, count in seen.errors.items():
                errors[version] = errors.get(version, 0) + count
        return Beat(invocations=invocations, errors=errors)
