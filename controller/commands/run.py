"""``lambda-rollouts run --source DIR``: the controller daemon in GitOps mode.

Loads the directory, follows its changes, and reconciles every rollout until SIGTERM or SIGINT;
then the reconciles in flight get ``--shutdown-grace`` seconds to finish their writes, the rest are
cancelled (the write-ahead record makes even an interrupted one safe) and it exits 0 within 10 s.
``--once`` runs a single pass and exits: 0 when every rollout was reconciled, 1 when any is Invalid
or failed. ``--metrics-port`` serves ``/metrics``,
``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from controller.commands.daemon import Daemon
from controller.commands.options import add_daemon_arguments, engine_settings
from controller.core.types import Phase
from controller.observability.logs import configure_logging
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource

logger = logging.getLogger("controller.run")

# SIGTERM to exit must stay under Kubernetes' default 30 s and our promised 10 s: the engine's grace,
# then at most this much more for it to cancel what is left.
CANCEL_MARGIN = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", type=Path, required=True, metavar="DIR", help="directory of rollout documents")
    parser.add_argument("--once", action="store_true", help="one reconcile pass, then exit")
    parser.add_argument("--rescan-interval", type=float, default=30.0, help=argparse.SUPPRESS)
    add_daemon_arguments(parser)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    if not args.source.is_dir():
        print(f"--source {args.source}: not a directory", file=sys.stderr)
        return 2
    # Before anything starts: a bad ownership config is a usage error (exit 2), not a runtime one.
    return asyncio.run(_main(args, settings=engine_settings(args)))


async def _main(args: argparse.Namespace, *, settings: EngineSettings) -> int:
    daemon = Daemon.from_args(args, settings=settings)
    engine = daemon.engine()
    source = FileSource(args.source, rescan_interval=args.rescan_interval)
    desired = await asyncio.to_thread(source.scan)
    await engine.apply(desired)
    if args.once:
        return await _once(engine, unreadable=bool(desired.orphan_errors))
    # Before serving: AWS unreachable, no credentials or no region is a one-line error (exit 1) now,
    # not a tick failing forever.
    await engine.start()
    daemon.health.set_sources_loaded()
    # GitOps mode runs one replica: it is its own leader.
    daemon.health.set_leadership_known()
    daemon.metrics.set_leader(True)
    async with daemon.serving(args.metrics_port):
        return await _daemon(engine, source, grace=settings.shutdown_grace)


async def _once(engine: Engine, *, unreadable: bool) -> int:
    """One pass: 1 when any document is invalid or unreadable, or any rollout failed to reconcile."""
    await engine.tick()
    statuses = [r.status for r in engine.rollouts().values()]
    failed = [s for s in statuses if s is not None and (s.phase is Phase.INVALID or s.errors)]
    return 1 if failed or unreadable else 0


async def _daemon(engine: Engine, source: FileSource, *, grace: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = asyncio.create_task(engine.run(stop=stop, updates=source.watch(stop)))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        stopped.cancel()
        runner.result()  # the loop never ends by itself: surface why it did
        return 1
    logger.info("stopping: finishing the writes in flight")
    try:
        # The engine bounds its own shutdown (grace, then cancel); this is the safety net for it.
        await asyncio.wait_for(runner, timeout=grace + CANCEL_MARGIN)
    except TimeoutError:
        # Cancelled mid-write at worst: the write-ahead record lets the next start complete it.
        logger.warning("writes still in flight after %.0fs; exiting anyway", grace + CANCEL_MARGIN)
    logger.info("stopped")
    return 0
