"""The controller's HTTP face: ``/metrics``, ``/healthz`` and ``/readyz`` on ``--metrics-port``.

Liveness and readiness answer different questions, so they read different state:

- ``/healthz``: is the reconcile loop turning? The engine calls ``Health.heartbeat()`` every tick;
  more than three tick intervals without one means the loop is stuck (a deadlock, a blocked event
  loop) and the process should be restarted.
- ``/readyz``: can this replica do its job? Sources loaded, AWS reachable and leadership known are
  flags the engine sets; a 503 names what is missing, and why when the setter said so (a GitOps
  standby: who holds the lease, since when), so an operator does not have to guess. ``details`` says
  what is worth knowing without deciding readiness (push-mode alarm events degraded to polling).

The server runs on the engine's event loop (aiohttp) rather than a thread: a blocked loop then also
stops ``/healthz`` answering, which is exactly the failure liveness probes exist to catch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType

from aiohttp import web

from controller.observability.prometheus import CONTENT_TYPE, Metrics

# How many missed ticks make the loop "not alive": one slow tick (a throttled AWS call) must not
# restart the controller, several in a row mean it is stuck.
MISSED_TICKS = 3

READINESS_CONDITIONS = ("sources_loaded", "aws_reachable", "leadership_known")


class Health:
    """Liveness (heartbeats) and readiness (named conditions) of one controller process."""

    def __init__(
        self,
        *,
        interval: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._metrics = metrics
        # Start counts as a heartbeat: the first tick may legitimately take a while (loading sources).
        self._last_beat = clock()
        self._conditions = dict.fromkeys(READINESS_CONDITIONS, False)
        self._reasons: dict[str, str] = {}
        # What /readyz says beside readiness, without deciding it (push-mode alarm events degraded).
        self._details: dict[str, str] = {}
        self._publish()

    def heartbeat(self) -> None:
        """Called by the engine once per tick."""
        self._last_beat = self._clock()

    def seconds_since_heartbeat(self) -> float:
        return self._clock() - self._last_beat

    def alive(self) -> bool:
        return self.seconds_since_heartbeat() <= MISSED_TICKS * self.interval

    def set_condition(self, name: str, value: bool, *, reason: str | None = None) -> None:
        """Set a readiness condition; ``name`` is one of ``READINESS_CONDITIONS``, ``reason`` why it is not met."""
        if name not in self._conditions:
            raise ValueError(f"unknown readiness condition: {name}")
        self._conditions[name] = value
        if value or reason is None:
            self._reasons.pop(name, None)
        else:
            self._reasons[name] = reason
        self._publish()

    def set_sources_loaded(self, value: bool = True) -> None:
        self.set_condition("sources_loaded", value)

    def set_aws_reachable(self, value: bool = True) -> None:
        self.set_condition("aws_reachable", value)

    def set_leadership_known(self, value: bool = True, *, reason: str | None = None) -> None:
        self.set_condition("leadership_known", value, reason=reason)

    def set_detail(self, name: str, text: str | None) -> None:
        """Something /readyz shows under ``details`` (None removes it); it never makes the replica unready."""
        if text is None:
            self._details.pop(name, None)
        else:
            self._details[name] = text

    def details(self) -> dict[str, str]:
        return dict(self._details)

    def missing(self) -> list[str]:
        """The readiness conditions not met, in a stable order."""
        return [name for name, ok in self._conditions.items() if not ok]

    def reasons(self) -> dict[str, str]:
        """Why the conditions not met are not, for those whose setter said."""
        return {name: self._reasons[name] for name in self.missing() if name in self._reasons}

    def ready(self) -> bool:
        return not self.missing()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.set_ready(self.ready())


class ObservabilityServer:
    """An aiohttp server for ``/metrics``, ``/healthz`` and ``/readyz``; use as an async context manager.

    ``port=0`` binds a free port (tests); ``port`` holds the bound one once started.
    """

    def __init__(
        self,
        *,
        metrics: Metrics,
        health: Health,
        host: str = "0.0.0.0",
        port: int = 8080,
        routes: Sequence[web.RouteDef] = (),
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        # More endpoints on the same server (the one-click gates of notifications).
        self._routes = tuple(routes)
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/healthz", self._healthz_handler)
        app.router.add_get("/readyz", self._readyz_handler)
        app.router.add_routes(self._routes)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        if runner.addresses:
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        # Set whole: the exposition content type carries a version parameter aiohttp would reject.
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def _healthz_handler(self, request: web.Request) -> web.Response:
        age = round(self.health.seconds_since_heartbeat(), 3)
        alive = self.health.alive()
        body = {"status": "ok" if alive else "stalled", "seconds_since_heartbeat": age}
        return web.json_response(body, status=200 if alive else 503)

    async def _readyz_handler(self, request: web.Request) -> web.Response:
        missing = self.health.missing()
        body: dict[str, object] = {"status": "ready" if not missing else "not ready", "missing": missing}
        reasons = self.health.reasons()
        if reasons:
            body["reasons"] = reasons
        details = self.health.details()
        if details:
            body["details"] = details
        return web.json_response(body, status=200 if not missing else 503)
