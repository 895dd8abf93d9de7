"""Builds the shell's long-lived objects from command-line options, once, for every verb.

``run``, ``plan`` and ``get`` need the same AWS clients configured the same way (region, endpoint,
retries); keeping that here means a new option is added in one place.

The two daemons, ``run`` (GitOps) and ``operator`` (Kubernetes), share more: AWS clients that report
every call to the metrics, engines whose outputs are the log and the metrics, heartbeats from every
tick, and the ``/metrics`` ``/healthz`` ``/readyz`` server. ``Daemon`` builds those the same way for
both, so the operator cannot silently lack a metric ``run`` has (or the other way round); each
command only adds what is its own (the file source; the Kubernetes status writer and leadership).
The ownership policy (``--ownership-config``) is one such shared option: both daemons read it the
same way, and a bad file stops either before it touches anything (exit 2, every problem listed).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from controller.aws import ApiObserver, AwsClients, AwsSettings, make_clients
from controller.document.ownership import OwnershipPolicy, load_ownership
from controller.errors import UsageError  # defined there so the CLI can catch it cheaply; importable from here
from controller.observability.http import Health, ObservabilityServer
from controller.observability.metrics import Metrics, MetricsSink
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.inbox import Inbox
from controller.runtime.sink import LogSink, StatusSink

logger = logging.getLogger("controller.wiring")


def clients_from_args(args: argparse.Namespace, *, observer: ApiObserver | None = None) -> AwsClients:
    settings = AwsSettings(region=args.region, endpoint_url=args.aws_endpoint_url)
    return make_clients(settings, observer=observer)


def add_time_scale(parser: argparse.ArgumentParser) -> None:
    """The hidden test-only option that scales every plan duration (presets' minutes to seconds)."""
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)


def add_ownership(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ownership-config",
        metavar="FILE",
        help="YAML mapping namespace -> function name/ARN globs its rollouts may move (multi-tenant clusters)",
    )


def ownership_from_args(args: argparse.Namespace, *, tenancy_warning: bool = False) -> OwnershipPolicy | None:
    """The ``--ownership-config`` policy, None without one; ``UsageError`` listing every problem.

    ``tenancy_warning``: say at start that, without a config, only owner tags on the functions keep
    one namespace's rollouts off another's functions (the operator serves many namespaces).
    """
    file = getattr(args, "ownership_config", None)
    if file is None:
        if tenancy_warning:
            logger.warning(
                "no --ownership-config: a rollout in any namespace may move any function not tagged "
                "lambda-rollouts/owner; multi-tenant clusters must set one"
            )
        return None
    policy, errors = load_ownership(file)
    if errors or policy is None:
        raise UsageError("\n".join(str(error) for error in errors))
    logger.info("ownership config %s: %d namespaces", file, len(policy.namespaces))
    return policy


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
