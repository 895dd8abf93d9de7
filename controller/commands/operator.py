"""``lambda-rollouts operator``: the controller daemon in Kubernetes mode.

LambdaRollout custom resources are the source, the engine is the one ``run`` uses (same budget,
same durable record), ``.status`` and Events are the output. Several replicas may run: a
``coordination.k8s.io`` Lease elects the one that writes. ``--selector`` makes a replica serve one
shard of the resources (``controller.kube.selector``), under a Lease of the shard's own. SIGTERM
stops cleanly: the tick in flight finishes its AWS writes, then the Lease is released so the standby
takes over at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid

from controller.commands.daemon import Daemon
from controller.commands.gates import annotation_store
from controller.commands.options import accounts_from_args, add_daemon_arguments, engine_settings
from controller.errors import UsageError
from controller.kube.api import Endpoint, KubeApi
from controller.kube.lease import LeaderElector, LeaseSettings
from controller.kube.operator import Operator, OperatorSettings
from controller.kube.selector import Selector
from controller.kube.wiring import Login, default_login, endpoint_of, run_operator
from controller.observability.http import Health
from controller.observability.logs import configure_logging
from controller.observability.prometheus import Metrics

logger = logging.getLogger("controller.operator")
DEFAULT_LEASE = "lambda-rollouts-leader"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable); default: all"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument(
        "--selector",
        "-l",
        metavar="LABEL_SELECTOR",
        help="serve only the LambdaRollouts this label selector matches (a shard, e.g. shard=a), under a "
        "Lease of the shard's own; run one Deployment per shard",
    )
    parser.add_argument(
        "--lease-name",
        help=f"the leader-election Lease (default {DEFAULT_LEASE}; with --selector, {DEFAULT_LEASE}-<digest "
        "of the selector>)",
    )
    parser.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "default",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument("--lease-duration", type=float, default=15.0, help="seconds a leader's lease lasts")
    parser.add_argument(
        "--identity",
        default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
        help="this replica's name in the Lease (default: $POD_NAME)",
    )
    add_daemon_arguments(parser)


def selector_from_args(args: argparse.Namespace) -> Selector | None:
    """The ``--selector`` of this replica's shard, None for all resources; ``UsageError`` for a bad one."""
    if args.selector is None:
        return None
    try:
        return Selector.parse(args.selector)
    except ValueError as problem:
        raise UsageError(f"--selector: {problem}") from None


def lease_settings(args: argparse.Namespace, selector: Selector | None = None) -> LeaseSettings:
    """client-go's proportions (15 s / 10 s / 2 s) scaled to the chosen lease duration; a shard's own Lease."""
    duration = float(args.lease_duration)
    name = args.lease_name or (selector.lease_name(DEFAULT_LEASE) if selector is not None else DEFAULT_LEASE)
    return LeaseSettings(
        name=name,
        namespace=args.lease_namespace,
        lease_duration=duration,
        renew_deadline=duration * 2 / 3,
        retry_period=duration * 2 / 15,
    )


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


async def serve(args: argparse.Namespace, *, login: Login = default_login, stop: asyncio.Event | None = None) -> None:
    """The whole daemon; ``login`` and ``stop`` are parameters so tests can run it in-process."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    # A bad --ownership-config raises UsageError (exit 2) before anything starts; none is warned about.
    settings = engine_settings(args, tenancy_warning=True)
    accounts = accounts_from_args(args, tenancy_warning=True)
    selector = selector_from_args(args)
    lease = lease_settings(args, selector)
    if selector is not None:
        logger.info(
            "--selector %s: serving only the LambdaRollouts it matches, led through the Lease %s/%s",
            selector.text,
            lease.namespace,
            lease.name,
        )
    daemon = Daemon.from_args(args, settings=settings, identity=args.identity, accounts=accounts)
    endpoint = endpoint_of(await login())

    async def relogin() -> Endpoint:
        return endpoint_of(await login())

    async with KubeApi(endpoint, relogin=relogin, user_agent=f"lambda-rollouts ({args.identity})") as api:
        elector = LeaderElector(api, identity=args.identity, settings=lease)
        operator = Operator(
            api=api,
            elector=elector,
            settings=OperatorSettings(
                identity=args.identity, engine=settings, namespaces=tuple(args.namespace), selector=selector
            ),
            new_engine=daemon.engine,
            clock=time.time,
            placement=daemon.scopes.placement,
            on_tick=daemon.health.heartbeat,
        )
        elector.on_lost = operator.lost_leadership
        async with daemon.serving(args.metrics_port, store=annotation_store(api)):
            monitor = asyncio.create_task(_report_health(operator, daemon.health, daemon.metrics, args.interval, stop))
            try:
                await run_operator(operator=operator, login=login, stop=stop)
            finally:
                monitor.cancel()


async def _report_health(
    operator: Operator, health: Health, metrics: Metrics, interval: float, stop: asyncio.Event
) -> None:
    """Readiness flags and the standby's heartbeat (the leader's comes from its housekeeping ticks)."""
    while not stop.is_set():
        leading = operator.elector.is_leader
        metrics.set_leader(leading)
        health.set_leadership_known(operator.elector.known.is_set())
        health.set_sources_loaded(operator.source.loaded)
        engine = operator.engine
        health.set_aws_reachable(not leading or (engine is not None and engine.ready))
        if not leading:
            health.heartbeat()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(interval, 1.0)):
                await stop.wait()
