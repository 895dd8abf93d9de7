"""What a controller daemon is made of, whichever source feeds it.

The two daemons, ``run`` (GitOps) and ``operator`` (Kubernetes), share more than their options
(``controller.commands.options``): AWS clients that report every call to the metrics, engines whose
outputs are the log and the metrics, heartbeats from every tick, and the ``/metrics`` ``/healthz``
``/readyz`` server. ``Daemon`` builds those the same way for both, so the operator cannot silently
lack a metric ``run`` has (or the other way round); each command only adds what is its own (the
file source; the Kubernetes status writer, request inbox and leadership).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from controller.aws import AwsClients
from controller.commands.options import clients_from_args
from controller.observability.http import Health, ObservabilityServer
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.inbox import Inbox
from controller.runtime.sink import LogSink, MetricsSink, StatusSink


def _always() -> bool:
    return True


@dataclass
class Daemon:
    """What a controller daemon is made of, whichever source feeds it."""

    aws: AwsClients
    metrics: Metrics
    health: Health
    settings: EngineSettings
    clock: Callable[[], float] = time.time
    # The server's port once started (``--metrics-port 0`` binds a free one); None when not served.
    port: int | None = field(default=None, init=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, settings: EngineSettings) -> Daemon:
        """Metrics first: the AWS clients report every call to them from the start."""
        metrics = Metrics()
        health = Health(interval=settings.interval, metrics=metrics)
        return cls(aws=clients_from_args(args, observer=metrics), metrics=metrics, health=health, settings=settings)

    def sinks(self) -> tuple[StatusSink, ...]:
        """The outputs every engine has: the log and the metrics."""
        return (LogSink(), MetricsSink(self.metrics, clock=self.clock))

    def engine(
        self, *, sinks: Sequence[StatusSink] = (), can_write: Callable[[], bool] = _always, inbox: Inbox | None = None
    ) -> Engine:
        """An engine reporting to ``sinks`` plus the log and metrics; each tick is a heartbeat.

        ``inbox``: where control requests wait (default: the functions' request tags, GitOps mode).
        """
        engine = Engine(
            self.aws,
            settings=self.settings,
            clock=self.clock,
            sinks=(*sinks, *self.sinks()),
            can_write=can_write,
            inbox=inbox,
        )

        def ticked() -> None:
            self.health.heartbeat()
            self.health.set_aws_reachable(engine.ready)

        engine.tick_listeners.append(ticked)
        return engine

    @contextlib.asynccontextmanager
    async def serving(self, port: int | None, *, host: str = "0.0.0.0") -> AsyncIterator[None]:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``port`` for the block (nothing when None)."""
        if port is None:
            yield
            return
        async with ObservabilityServer(metrics=self.metrics, health=self.health, host=host, port=port) as server:
            self.port = server.port
            yield
