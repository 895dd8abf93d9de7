"""A client of the emulator's own control endpoints (``/_emulator/...``), over HTTP.

The demo, the benchmarks and the tests drive traffic and version behaviour the same way, whether the
emulator runs in their process or in another one (``lambda-rollouts emulator``, or an emulator a test
started and passed by URL): through these endpoints. They are the emulator's, not AWS APIs, so they
are called with plain HTTP and JSON rather than boto3.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class EmulatorControlError(RuntimeError):
    """A control request the emulator refused (its status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"emulator control request failed ({status}): {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class TrafficResult:
    """What a traffic request did: invocations and errors per executed version."""

    invocations: Mapping[str, int]
    errors: Mapping[str, int]


class EmulatorControl:
    """The control endpoints of the emulator at ``url``."""

    def __init__(self, url: str, *, region: str = "us-east-1", timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.region = region
        self.timeout = timeout

    def _request(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=data,
            method="GET" if data is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            try:
                message = str(json.loads(err.read() or b"{}").get("error", err.reason))
            except ValueError:
                message = str(err.reason)
            raise EmulatorControlError(err.code, message) from err

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change emulator settings (``alarm_period_scale``, ``invoke_seed`` ...); returns them all."""
        return dict(self._request("/_emulator/config", settings)["settings"])

    def set_behaviour(
        self,
        function: str,
        version: str,
        *,
        error_rate: float = 0.0,
        duration_ms: float = 100.0,
        slow_share: float = 0.0,
        slow_ms: float = 0.0,
        payload: str | None = None,
        sleep: bool = False,
    ) -> None:
        """How ``version`` of ``function`` answers Invoke from now on (see ``lambda_metrics.Behaviour``)."""
        self._request(
            "/_emulator/lambda/behaviour",
            {
                "function": function,
                "version": str(version),
                "region": self.region,
                "error_rate": error_rate,
                "duration_ms": duration_ms,
                "slow_share": slow_share,
                "slow_ms": slow_ms,
                "payload": payload,
                "sleep": sleep,
            },
        )

    def traffic(
        self,
        function: str,
        qualifier: str | None = None,
        *,
        count: int | None = None,
        rate: float | None = None,
        seconds: float | None = None,
        at: float | None = None,
        seed: int | None = None,
    ) -> TrafficResult:
        """Invoke ``function:qualifier`` ``count`` times at ``at``, or ``rate``/s over [``at - seconds``, ``at``).

        Recorded exactly as that many Invokes: weighted routing per request, each version's behaviour,
        Lambda's ``AWS/Lambda`` metrics. A shortcut of the emulator's own, not an AWS API.
        """
        body: dict[str, Any] = {"function": function, "region": self.region}
        for key, value in (
            ("qualifier", qualifier),
            ("count", count),
            ("rate", rate),
            ("seconds", seconds),
            ("at", at),
            ("seed", seed),
        ):
            if value is not None:
                body[key] = value
        found = self._request("/_emulator/lambda/traffic", body)
        return TrafficResult(invocations=dict(found["invocations"]), errors=dict(found["errors"]))
