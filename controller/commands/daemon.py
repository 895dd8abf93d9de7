"""What a controller daemon is made of, whichever source feeds it.

The two daemons, ``run`` (GitOps) and ``operator`` (Kubernetes), share more than their options
(``controller.commands.options``): AWS clients that report every call to the metrics, engines whose
outputs are the log and the metrics, heartbeats from every tick, and the ``/metrics`` ``/healthz``
``/readyz`` server. ``Daemon`` builds those the same way for both, so the operator cannot silently
lack a metric ``run`` has (or the other way round); each command only adds what is its own (the
file source; the Kubernetes status writer, request inbox and leadership).

What a daemon calls "the engine" is one engine per scope (``controller.runtime.scopes``): the
controller's own clients (``aws``: also the lease's, the notifier's and the gates') serve the default
scope, every other account and region gets clients of its own from ``clients`` (an assumed role, a
budget per account and region), made once and kept across leadership terms. Push-mode alarm events
(``--alarm-events``, ``controller.commands.alarm_push``) ride on the default scope's engine, beside it
for as long as it runs: the queue and the EventBridge rule are in the controller's own account and
region, so rollouts elsewhere are judged by polling (and the alarm history). A standby's engine does
not run, so a standby never consumes.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from controller.aws import AwsClients, make_clients, resolve_region
from controller.aws.assume import session_name
from controller.commands.alarm_push import DETAIL, NOT_LEADING, AlarmPush
from controller.commands.gates import GateDesk, StoreRequest, tag_store
from controller.commands.options import AlarmEvents, alarm_events_from_args, aws_settings, notifications_from_args
from controller.document.accounts import DEFAULT_ACCOUNT, AccountsConfig, Scope
from controller.notify.announcer import NotifierAnnouncer
from controller.notify.build import build_notifier
from controller.notify.delivery import Notifier
from controller.notify.links import gate_routes
from controller.notify.secrets import SecretReader
from controller.observability.http import Health, ObservabilityServer
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.inbox import Inbox
from controller.runtime.scopes import ClientsFactory, ScopedEngines, Scopes, Shard
from controller.runtime.sink import AnnouncingSink, FanoutSink, LogSink, MetricsSink, StatusSink


def _always() -> bool:
    return True


def _everywhere(_scope: Scope) -> bool:
    return True


@dataclass
class Daemon:
    """What a controller daemon is made of, whichever source feeds it."""

    aws: AwsClients
    metrics: Metrics
    health: Health
    settings: EngineSettings
    # Which scope each rollout is in, the clients of each, and the scopes this replica serves.
    scopes: Scopes
    clients: ClientsFactory
    shard: Shard | None = None
    clock: Callable[[], float] = time.time
    # ``--notifications``: the notifier beside the engine, and its side of the engine's announcer seam.
    notifier: Notifier | None = None
    announcer: NotifierAnnouncer | None = None
    # ``--alarm-events``: push mode on the own scope's engine (None: off, polling only).
    alarm_events: AlarmEvents | None = None
    # The server's port once started (``--metrics-port 0`` binds a free one); None when not served.
    port: int | None = field(default=None, init=False)

    @classmethod
    def from_args(
        cls,
        args: argparse.Namespace,
        *,
        settings: EngineSettings,
        identity: str,
        accounts: AccountsConfig | None = None,
        shard: Shard | None = None,
    ) -> Daemon:
        """Metrics first: the AWS clients report every call to them from the start.

        ``identity`` names this replica in the session name of every role it assumes (the target
        accounts' CloudTrail says which controller it was). A bad ``--notifications`` config (or a
        secret it names that cannot be read) or ``--alarm-events`` value is a usage error.
        """
        alarm_events = alarm_events_from_args(args)
        metrics = Metrics()
        health = Health(interval=settings.interval, metrics=metrics)
        where = aws_settings(args)
        region = resolve_region(where)
        aws = make_clients(where, observer=metrics.aws_observer(account=DEFAULT_ACCOUNT, region=region))
        clients = ClientsFactory(own=aws, settings=where, metrics=metrics, session_name=session_name(identity))
        scopes = Scopes(region=aws.region, accounts=accounts)
        daemon = cls(
            aws=aws,
            metrics=metrics,
            health=health,
            settings=settings,
            scopes=scopes,
            clients=clients,
            shard=shard,
            alarm_events=alarm_events,
        )
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
    ) -> ScopedEngines:
        """The engines of one leadership term, one per scope, reporting to ``sinks`` plus the log and
        metrics; each tick is a heartbeat.

        ``inbox``: where control requests wait (default: each scope's functions' request tags, GitOps mode).
        """

        def new_engine(aws: AwsClients, scope: Scope) -> Engine:
            engine = Engine(
                aws,
                settings=self.settings,
                clock=self.clock,
                sinks=(*sinks, *self.sinks()),
                can_write=can_write,
                inbox=inbox,
                announcer=self.announcer,
            )
            if self.alarm_events is not None and aws is self.aws:
                # The controller's own account and region: where its queue and rule are (module docstring).
                push = AlarmPush(
                    engine=engine, aws=aws, settings=self.alarm_events, metrics=self.metrics, health=self.health
                )
                engine.companions.append(push.run)
            return engine

        # What a scope that cannot be reached shows on its rollouts goes where the engines' statuses go.
        outputs: list[StatusSink] = [*sinks, *self.sinks()]
        if self.announcer is not None:
            outputs.append(AnnouncingSink(self.announcer))
        engines = ScopedEngines(
            scopes=self.scopes,
            clients=self.clients.clients,
            new_engine=new_engine,
            sink=FanoutSink(outputs),
            serves=self.shard.serves if self.shard is not None else _everywhere,
            always=self.scopes.always(),
            metrics=self.metrics,
            interval=self.settings.interval,
            clock=self.clock,
        )

        def ticked() -> None:
            self.health.heartbeat()
            self.health.set_aws_reachable(engines.ready)

        engines.tick_listeners.append(ticked)
        return engines

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
