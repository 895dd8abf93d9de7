"""One GitOps replica: follows its directory always, reconciles only while it holds the lease.

The file-source twin of ``controller.kube.operator``. The directory is watched from start to end,
leader or not, so a standby that takes over acts on the documents as they are at that instant,
without a rescan. Each leadership term gets a fresh engine: the previous leader moved records and
aliases since this replica last looked, and an engine's caches (records, observations) are only
right for the term that filled them; a fresh engine reads every record once at its start, then
completes any write the previous leader left half-done (the write-ahead record). Its writes are
gated by the lease (``can_write``), and the moment the lease is lost (``on_lost``) the term's task
is cancelled, which cancels every reconcile in flight: the write-ahead record makes that safe at
any instant.

On ``stop`` (SIGTERM) the engine finishes the writes in flight within its shutdown grace; the
caller then releases the lease, so a standby takes over at its next look.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from controller.runtime.desired import DesiredState
from controller.runtime.scopes import Engines
from controller.sources.files import FileSource
from controller.sources.lease import Leadership

logger = logging.getLogger("controller.replica")


class EngineFactory(Protocol):
    """Builds the engine of one leadership term (the daemon adds its log and metrics sinks)."""

    def __call__(self, *, can_write: Callable[[], bool]) -> Engines: ...


class GitOpsReplica:
    """Follows ``source``; runs an engine over it exactly while ``lease`` leads (see the module docstring)."""

    def __init__(
        self,
        *,
        source: FileSource,
        desired: DesiredState,
        lease: Leadership,
        new_engine: EngineFactory,
    ) -> None:
        self.source = source
        self.desired = desired
        self.lease = lease
        self.engine: Engines | None = None
        self.terms = 0
        self._new_engine = new_engine
        # An engine the daemon already started for the first term (``begin_with``).
        self._first_engine: Engines | None = None
        self._term: asyncio.Task[None] | None = None
        # Adopting a new view and starting a term's engine must not interleave.
        self._applying = asyncio.Lock()
        lease.on_lost = self.lost_leadership

    def begin_with(self, engine: Engines) -> None:
        """Use ``engine``, started by the daemon (it checked that AWS answers), for the first term.

        Only while the lease still leads: an engine of a term that is already over is never used.
        """
        if self.lease.is_leader and self.terms == 0:
            self._first_engine = engine

    def lost_leadership(self) -> None:
        """Called by the lease the moment it steps down: the term's engine stops now."""
        self._first_engine = None  # its caches belong to a term that is over
        if self._term is not None:
            self._term.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the directory and lead whenever the lease says so, until ``stop``.

        On ``stop`` the engine of the term in progress finishes its writes in flight (its grace,
        then it cancels the rest) before ``run`` returns.
        """
        follower = asyncio.create_task(self._follow(stop))
        try:
            while not stop.is_set():
                if not await _first(self.lease.leading.wait(), stop.wait()):
                    return
                await self._lead(stop)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    async def _follow(self, stop: asyncio.Event) -> None:
        async for desired in self.source.watch(stop):
            async with self._applying:
                self.desired = desired
                if self.engine is not None:
                    await self.engine.apply(desired)

    async def _lead(self, stop: asyncio.Event) -> None:
        engine = self._first_engine or self._new_engine(can_write=self.lease.may_write)
        self._first_engine = None
        async with self._applying:
            self.engine = engine
            await engine.apply(self.desired)
        self.terms += 1
        # The engine reads the records at its first tick (a failure there is retried every tick).
        term = self._term = asyncio.create_task(engine.run(stop=stop), name=f"leadership term {self.terms}")
        if not self.lease.leading.is_set():
            term.cancel()  # lost while the engine was being set up: ``on_lost`` came before the term
        try:
            await term
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves, not just the term
            logger.info("reconciling stopped with the lease; following the directory as a standby")
        finally:
            self._term = None
            async with self._applying:
                self.engine = None


async def _first(wanted: Awaitable[Any], stop: Awaitable[Any]) -> bool:
    """Wait for ``wanted`` or ``stop``; True when ``wanted`` came first."""
    wanted_task, stop_task = asyncio.ensure_future(wanted), asyncio.ensure_future(stop)
    await asyncio.wait({wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    wanted_task.cancel()
    stop_task.cancel()
    return wanted_task.done() and not wanted_task.cancelled()


__all__ = ["EngineFactory", "GitOpsReplica"]
