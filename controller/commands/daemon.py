"""What a controller daemon is made of, whichever source feeds it.

The two daemons, ``run`` (GitOps) and ``operator`` (Kubernetes), share more than their options
(``controller.commands.options``): AWS clients that report every call to the metrics, engines whose
outputs are the log and the metrics, heartbeats from every tick, and the ``/metrics`` ``/healthz``
``/readyz`` server. ``Daemon`` builds those the same way for both, so the operator cannot silently
lack a metric ``run`` has (or the other way round); each command only adds what is its own (the
file source; the Kubernetes status writer, request inbox and leadership). Push-mode alarm events
(``--alarm-events``) ride on every engine it builds, beside it for as long as it runs
(``controller.commands.alarm_push``): a standby's engine does not run, so a standby never consumes.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from controller.aws import AwsClients
from controller.commands.alarm_push import DETAIL, NOT_LEADING, AlarmPush
from controller.commands.gates import GateDesk, StoreRequest, tag_store
from controller.commands.options import AlarmEvents, alarm_events_from_args, clients_from_args, notifications_from_args
from controller.notify.announcer import NotifierAnnouncer
from controller.notify.build import build_notifier
from controller.notify.delivery import Notifier
from controller.notify.links import gate_routes
from controller.notify.secrets import SecretReader
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
    # ``--notifications``: the notifier beside the engine, and its side of the engine's announcer seam.
    notifier: Notifier | None = None
    announcer: NotifierAnnouncer | None = None
    # ``--alarm-events``: push mode for every engine built here (None: off, polling only).
    alarm_events: AlarmEvents | None = None
    # The server's port once started (``--metrics-port 0`` binds a free one); None when not served.
    port: int | None = field(default=None, init=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, settings: EngineSettings) -> Daemon:
        """Metrics first: the AWS clients report every call to them from the start.

        A bad ``--notifications`` config (or a secret it names that cannot be read) or ``--alarm-events``
        value is a usage error.
        """
        alarm_events = alarm_events_from_args(args)
        metrics = Metrics()
        health = Health(interval=settings.interval, metrics=metrics)
        aws = clients_from_args(args, observer=metrics)
        daemon = cls(aws=aws, metrics=metrics, health=health, settings=settings, alarm_events=alarm_events)
        if alarm_events is not None:
            metrics.alarm_events_configured(mode=alarm_events.mode)
            health.set_detail(DETAIL, NOT_LEADING)
        config = notifications_from_args(args)
        if config is not None:
            announcer: list[NotifierAnnouncer] = []
            notifier = build_notifier(
                config,
                secrets=SecretReader(),
                sns=aws.sns,
                observer=metrics,
                on_finished=lambda ident, target, outcome: announcer[0].finished(ident, target, outcome),
            )
            announcer.append(NotifierAnnouncer(notifier, config))
            daemon.notifier, daemon.announcer = notifier, announcer[0]
        return daemon

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
            announcer=self.announcer,
        )

        def ticked() -> None:
            self.health.heartbeat()
            self.health.set_aws_reachable(engine.ready)

        engine.tick_listeners.append(ticked)
        if self.alarm_events is not None:
            push = AlarmPush(
                engine=engine, aws=self.aws, settings=self.alarm_events, metrics=self.metrics, health=self.health
            )
            engine.companions.append(push.run)
        return engine

    @contextlib.asynccontextmanager
    async def serving(
        self, port: int | None, *, host: str = "0.0.0.0", store: StoreRequest | None = None
    ) -> AsyncIterator[None]:
        """For the block: the notifier, and ``/metrics``, ``/healthz``, ``/readyz`` on ``port`` (none
        when None), with the one-click gates when links are configured. ``store`` leaves a gate's
        request where this mode's leader reads requests (default: the function's tag, GitOps mode)."""
        async with contextlib.AsyncExitStack() as stack:
            if self.notifier is not None:
                await stack.enter_async_context(self.notifier)
            if port is None:
                yield
                return
            routes = []
            signer = self.notifier.signer if self.notifier is not None else None
            if signer is not None:
                desk = GateDesk(self.aws, store or tag_store(self.aws), clock=self.clock)
                routes = gate_routes(signer, desk, clock=self.clock)
            server = ObservabilityServer(metrics=self.metrics, health=self.health, host=host, port=port, routes=routes)
            await stack.enter_async_context(server)
            self.port = server.port
            yield
