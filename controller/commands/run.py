"""``lambda-rollouts run --source DIR``: the controller daemon in GitOps mode.

Loads the directory, follows its changes, and reconciles every rollout until SIGTERM or SIGINT;
then the reconciles in flight get ``--shutdown-grace`` seconds to finish their writes, the rest are
cancelled (the write-ahead record makes even an interrupted one safe) and it exits 0 within 10 s.
``--once`` runs a single pass and exits: 0 when every rollout was reconciled, 1 when any is Invalid
or failed. It starts no notifier: with ``--notifications`` the pass writes its transitions into the
records' outboxes, and the next daemon sends them. ``--metrics-port`` serves ``/metrics``, ``/healthz`` and ``/readyz``.

Several replicas (on one host or several) may run on the same directory: exactly one writes, the
holder of a lease in DynamoDB (``--lease``, ``controller.sources.lease``); the others follow the
directory, write nothing, and take over when the holder stops renewing. ``--lease off`` is a single
replica that knows it is alone. A clean stop releases the lease after the writes in flight, so a
standby takes over at once. ``run --once`` takes the lease for its pass, or exits 1 with one line
when a live controller holds it.

One controller serves every account and region its documents and ``--accounts`` name, one engine
per scope (``controller.runtime.scopes``). ``--shard ACCOUNT[/REGION]`` makes it serve only those
scopes, under a lease of the shard's own (``LEASE-NAME/ACCOUNT[/REGION]``): N shards on one
directory are N leader elections, each with its replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from pathlib import Path

from controller.aws import AwsClients
from controller.aws.errors import AwsError, NotFound
from controller.commands.daemon import Daemon
from controller.commands.options import accounts_from_args, add_daemon_arguments, engine_settings
from controller.core.types import Phase
from controller.document.accounts import AccountsConfig
from controller.errors import UsageError
from controller.observability.logs import configure_logging
from controller.runtime.desired import DesiredState
from controller.runtime.engine import EngineSettings
from controller.runtime.scopes import ScopedEngines, Shard
from controller.sources.files import FileSource
from controller.sources.lease import (
    DEFAULT_NAME,
    DEFAULT_TABLE,
    GitOpsLease,
    Identity,
    Leadership,
    LeaseHeld,
    LeaseSettings,
    SoleWriter,
    TableStore,
)
from controller.sources.replica import GitOpsReplica

logger = logging.getLogger("controller.run")

# SIGTERM to exit must stay under Kubernetes' default 30 s and our promised 10 s: the engine's grace,
# then at most this much more for it to cancel what is left, then at most this long to release the lease
# (a standby takes over after a lease duration anyway).
CANCEL_MARGIN = 1.0
RELEASE_WAIT = 0.5
# DynamoDB's rule for table names.
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True, metavar="DIR", help="directory of rollout documents")
    parser.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    parser.add_argument("--rescan-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--lease",
        default="auto",
        metavar="auto|off|TABLE",
        help=f"one writer among replicas: a lease in DynamoDB table {DEFAULT_TABLE} created if missing (auto, "
        "the default), in an existing TABLE, or none for a single replica (off)",
    )
    parser.add_argument(
        "--lease-name",
        default=DEFAULT_NAME,
        help="the lease's name in the table; controllers for different directories in one account need "
        "different names (default: default)",
    )
    parser.add_argument(
        "--shard",
        metavar="ACCOUNT[/REGION]",
        help="serve only the rollouts of this account (12 digits, or default: the controller's own "
        "credentials) and region, under a lease of the shard's own; run one controller per shard",
    )
    parser.add_argument(
        "--lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a standby waits for a silent holder before it takes over (default 15)",
    )
    add_daemon_arguments(parser)


def shard_from_args(args: argparse.Namespace) -> Shard | None:
    """The ``--shard`` this replica serves, None for every scope; ``UsageError`` for a bad value."""
    if args.shard is None:
        return None
    try:
        return Shard.parse(args.shard)
    except ValueError as problem:
        raise UsageError(f"--shard {problem}") from None


def lease_settings(args: argparse.Namespace, shard: Shard | None = None) -> LeaseSettings | None:
    """The lease ``--lease`` asks for (a shard's own), None for ``off``; ``UsageError`` for a bad value."""
    if args.lease == "off":
        return None
    table = DEFAULT_TABLE if args.lease == "auto" else args.lease
    if not _TABLE_NAME.match(table):
        raise UsageError(f"--lease {table}: not a DynamoDB table name (3-255 letters, digits, _ . -), auto or off")
    if not args.lease_name:
        raise UsageError("--lease-name: may not be empty")
    try:
        name = shard.lease_name(args.lease_name) if shard is not None else args.lease_name
        return LeaseSettings.scaled(args.lease_duration, table=table, name=name, create_table=args.lease == "auto")
    except ValueError:
        raise UsageError(f"--lease-duration {args.lease_duration}: must be a positive number of seconds") from None


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    if not args.source.is_dir():
        print(f"--source {args.source}: not a directory", file=sys.stderr)
        return 2
    # Before anything starts: a bad ownership or accounts config, shard or lease option is a usage error (exit 2).
    settings, accounts, shard = engine_settings(args), accounts_from_args(args), shard_from_args(args)
    return asyncio.run(
        _main(args, settings=settings, lease=lease_settings(args, shard), accounts=accounts, shard=shard)
    )


async def open_lease(aws: AwsClients, settings: LeaseSettings | None) -> Leadership:
    """The lease, its table ready (AWS unreachable or a missing permission: one line, exit 1)."""
    if settings is None:
        logger.info("--lease off: this controller assumes it is the only one writing for its directory")
        return SoleWriter()
    store = TableStore(aws.dynamodb, table=settings.table, name=settings.name)
    try:
        await store.open(create=settings.create_table)
    except NotFound:
        raise AwsError(
            code="LeaseTableMissing",
            message=f"--lease {settings.table}: the table does not exist (create it, or use --lease auto)",
            operation="DescribeTable",
        ) from None
    except AwsError as exc:
        if exc.code not in ("AccessDenied", "AccessDeniedException"):
            raise
        hint = f"{exc.message} (the lease table {settings.table}: see docs/iam.md, or --lease off for one replica)"
        raise AwsError(code=exc.code, message=hint, operation=exc.operation) from None
    lease = GitOpsLease(store, identity=Identity.of_this_process(), settings=settings)
    logger.info(
        "lease %s in table %s: duration %.1fs, renew deadline %.1fs, retry every %.1fs",
        settings.name,
        settings.table,
        settings.lease_duration,
        settings.renew_deadline,
        settings.retry_period,
    )
    return lease


async def _main(
    args: argparse.Namespace,
    *,
    settings: EngineSettings,
    lease: LeaseSettings | None,
    accounts: AccountsConfig | None = None,
    shard: Shard | None = None,
) -> int:
    identity = f"{socket.gethostname()}-{os.getpid()}"
    daemon = Daemon.from_args(args, settings=settings, identity=identity, accounts=accounts, shard=shard)
    if shard is not None:
        logger.info("--shard %s: serving only the rollouts of that account and region", shard)
    leadership = await open_lease(daemon.aws, lease)
    # The last check before a Lambda write leaves any account's clients: after budget waits and retries.
    daemon.clients.set_gate(leadership.may_write)
    source = FileSource(args.source, rescan_interval=args.rescan_interval, placement=daemon.scopes.placement)
    desired = await asyncio.to_thread(source.scan)
    if args.once:
        return await _once(daemon, leadership, desired)
    # The lease is renewed from now on, whatever start-up still takes (the first records scan).
    lease_stop = asyncio.Event()
    campaign = asyncio.create_task(leadership.run(lease_stop))
    try:
        await leadership.known.wait()
        replica = GitOpsReplica(source=source, desired=desired, lease=leadership, new_engine=daemon.engine)
        if leadership.is_leader:
            # Before serving: AWS unreachable, no credentials or no region is a one-line error (exit 1)
            # now, not a tick failing forever (a standby checked as much by reading the lease).
            engine = daemon.engine(can_write=leadership.may_write)
            await engine.apply(desired)
            await engine.start()
            replica.begin_with(engine)
        daemon.health.set_sources_loaded()
        async with daemon.serving(args.metrics_port):
            return await _daemon(daemon, replica, grace=settings.shutdown_grace)
    finally:
        lease_stop.set()
        await _release(campaign)


async def _once(daemon: Daemon, leadership: Leadership, desired: DesiredState) -> int:
    """One pass under the lease: 1 when any document is invalid or unreadable, or any rollout failed."""
    if not await leadership.acquire():
        held = leadership.held_by() if isinstance(leadership, GitOpsLease) else None
        why = f"{held}: another controller runs this directory" if held else leadership.waiting_reason()
        raise LeaseHeld(f"{why}; this pass does nothing")
    if daemon.notifier is not None:
        # The pass still writes its transitions into the records' outboxes: nothing is lost, only later.
        logger.info("--once sends no notifications: this pass's transitions wait in the records for the daemon")
    renewing = asyncio.Event()
    renewer = asyncio.create_task(leadership.run(renewing))
    try:
        engine = daemon.engine(can_write=leadership.may_write)
        await engine.apply(desired)
        return await _one_pass(engine, unreadable=bool(desired.orphan_errors))
    finally:
        renewing.set()
        await _release(renewer)


async def _one_pass(engine: ScopedEngines, *, unreadable: bool) -> int:
    await engine.tick()
    statuses = list(engine.statuses().values())
    failed = [s for s in statuses if s is not None and (s.phase is Phase.INVALID or s.errors)]
    return 1 if failed or unreadable else 0


async def _daemon(daemon: Daemon, replica: GitOpsReplica, *, grace: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The lease outlives this: it is renewed while the writes in flight finish, then released (``_main``).
    monitor = asyncio.create_task(_report_health(daemon, replica, stop))
    runner = asyncio.create_task(replica.run(stop))
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # the loop never ends by itself: surface why it did
            return 1
        logger.info("stopping: finishing the writes in flight")
        try:
            # The engine bounds its own shutdown (grace, then cancel); this is the safety net for it.
            async with asyncio.timeout(grace + CANCEL_MARGIN):
                await runner
        except TimeoutError:
            # Cancelled mid-write at worst: the write-ahead record lets the next leader complete it.
            logger.warning("writes still in flight after %.0fs; exiting anyway", grace + CANCEL_MARGIN)
    finally:
        stopped.cancel()
        monitor.cancel()
    logger.info("stopped")
    return 0


async def _release(campaign: asyncio.Task[None]) -> None:
    """Let the lease's campaign end (it releases the lease), but not for longer than ``RELEASE_WAIT``."""
    try:
        async with asyncio.timeout(RELEASE_WAIT):
            await campaign
    except TimeoutError:
        logger.warning("could not release the lease in time; a standby takes over after the lease duration")


async def _report_health(daemon: Daemon, replica: GitOpsReplica, stop: asyncio.Event) -> None:
    """Readiness, the leader gauge and the standby's heartbeat (the leader's come from its ticks)."""
    health, metrics, lease = daemon.health, daemon.metrics, replica.lease
    while not stop.is_set():
        leading = lease.is_leader
        metrics.set_leader(leading)
        health.set_leadership_known(leading, reason=lease.waiting_reason())
        engine = replica.engine
        health.set_aws_reachable(not leading or (engine is not None and engine.ready))
        if not leading:
            health.heartbeat()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(daemon.settings.interval, 0.5)):
                await stop.wait()
