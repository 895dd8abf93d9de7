"""One operator replica: follows the resources always, runs the engine and writes only while it leads.

kopf hands every watch event to ``Operator.watched`` (``controller.kube.wiring``), which feeds the
``ResourceSource`` and writes nothing. Every write to Kubernetes (status, Events, our finalizer,
removing a handled request annotation) and every AWS write is made by the *leader*: each leadership
term gets a fresh engine (the previous leader may have moved records since our last term) whose
writes are gated by the Lease (``can_write``), so a replica that loses it stops before its next write,
even in the middle of a tick. The durable record on the function stays authoritative: a resource
deleted and applied again resumes where it was.

With a label selector (``OperatorSettings.selector``, ``operator --selector``) the replica serves one
shard: a resource the selector does not match is, to it, a resource that does not exist.

Control requests come through the engine's request inbox (``controller.kube.inbox``), exactly as
GitOps mode's come through the function's tag. Housekeeping, on the leader, makes again the status
patches the apiserver did not take, and keeps our finalizer exactly on resources with
``spec.revertOnDeletion: true``; deleting such a resource while its rollout is in flight submits an
``abort`` to the inbox first and releases the object once the alias is back on stable.

A clean stop lets the engine finish the writes in flight within its own shutdown grace (the one
grace both daemons have, ``EngineSettings.shutdown_grace``), then the Lease is released, so the
standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from controller.core.types import Phase, Request, Verb
from controller.document.loader import Placement, written_placement
from controller.kube.api import ApiError, KubeApi
from controller.kube.inbox import AnnotationInbox
from controller.kube.lease import LeaderElector
from controller.kube.names import FINALIZER, rollout_path, rollouts_path
from controller.kube.selector import Selector
from controller.kube.source import Resource, ResourceSource
from controller.kube.status import KubeStatusWriter
from controller.runtime.engine import EngineSettings
from controller.runtime.inbox import Inbox
from controller.runtime.scopes import Engines
from controller.runtime.sink import StatusSink

# Phases in which the alias may carry the canary: deleting with revertOnDeletion waits for these to end.
IN_FLIGHT = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})
# On a clean stop the engine bounds its own shutdown (grace, then cancel): this is the safety net.
STOP_MARGIN = 2.0

logger = logging.getLogger("controller.kube")


@dataclass(frozen=True)
class OperatorSettings:
    identity: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # This replica's shard: only the resources it matches (None: all of them).
    selector: Selector | None = None


class EngineFactory(Protocol):
    """Builds the engine of one leadership term (the daemon wiring adds its log and metrics sinks)."""

    def __call__(self, *, sinks: Sequence[StatusSink], can_write: Callable[[], bool], inbox: Inbox) -> Engines: ...


class Operator:
    """One replica of the Kubernetes-mode controller (see the module docstring)."""

    def __init__(
        self,
        *,
        api: KubeApi,
        elector: LeaderElector,
        settings: OperatorSettings,
        new_engine: EngineFactory,
        clock: Callable[[], float],
        on_tick: Callable[[], None] | None = None,
        placement: Placement = written_placement,
    ) -> None:
        self.source = ResourceSource(placement=placement)
        self.settings = settings
        self.elector = elector
        self.engine: Engines | None = None
        self.inbox = AnnotationInbox(api, self.source)
        self._api = api
        self._new_engine = new_engine
        self._clock = clock
        self._on_tick = on_tick
        self.writer = KubeStatusWriter(
            api, self.source, is_leader=lambda: elector.is_leader, identity=settings.identity, clock=clock
        )
        self._poke = asyncio.Event()
        self._writers: set[asyncio.Task[Any]] = set()

    # ---- kopf's side ----

    def watched(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """Every watch event (None = the initial listing) lands here; it never writes."""
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta['name']}"
        before = self.source.get(key)
        selector = self.settings.selector
        outside = selector is not None and not selector.matches(meta.get("labels") or {})
        if event_type == "DELETED" or outside:  # another shard's resource is, to this one, gone
            self.source.gone(meta.get("namespace") or "default", meta["name"])
        else:
            after = self.source.seen(body)
            if after.request and (before is None or before.request != after.request) and self.engine is not None:
                self.engine.wake()  # a control request: looked at now, not at the next regular tick
        self._poke.set()

    async def listable(self) -> bool:
        """Whether the watched resources can be listed with our credentials (one item is enough)."""
        try:
            for namespace in self.settings.namespaces or (None,):
                await self._api.get(f"{rollouts_path(namespace)}?limit=1")
        except (ApiError, OSError, TimeoutError) as exc:
            logger.debug("cannot list the LambdaRollouts yet: %s", exc)
            return False
        return True

    # ---- leadership ----

    def lost_leadership(self) -> None:
        """Called by the elector the moment it steps down: everything that writes stops now."""
        for task in list(self._writers):
            task.cancel()
        self.writer.forget_unwritten()

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to lead, lead until leadership is lost or ``stop``; again and again."""
        while not stop.is_set():
            if not await first(self.elector.leading.wait(), stop.wait()):
                return
            await self._lead(stop)

    async def _lead(self, stop: asyncio.Event) -> None:
        engine = self.engine = self._new_engine(
            sinks=(self.writer,), can_write=lambda: self.elector.is_leader, inbox=self.inbox
        )
        engine_stop = asyncio.Event()
        engine_task = asyncio.create_task(engine.run(stop=engine_stop, updates=self.source.updates()))
        housekeeping = asyncio.create_task(self._housekeeping_loop())
        self._writers |= {engine_task, housekeeping}
        try:
            lost = asyncio.create_task(_wait_cleared(self.elector.leading))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({lost, stopping, engine_task}, return_when=asyncio.FIRST_COMPLETED)
            lost.cancel()
            stopping.cancel()
            housekeeping.cancel()
            if stop.is_set() and not engine_task.done():
                # Clean shutdown: the engine finishes its writes within its grace, then the Lease goes.
                engine_stop.set()
                grace = self.settings.engine.shutdown_grace + STOP_MARGIN
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    async with asyncio.timeout(grace):
                        await asyncio.shield(engine_task)
            engine_task.cancel()
            await asyncio.gather(engine_task, housekeeping, return_exceptions=True)
        finally:
            self._writers -= {engine_task, housekeeping}
            self.engine = None

    # ---- housekeeping (leader only) ----

    async def _housekeeping_loop(self) -> None:
        while True:
            self._poke.clear()
            try:
                await self.housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.error("housekeeping failed, retried at the next tick: %s: %s", type(exc).__name__, exc)
            if self._on_tick is not None:
                self._on_tick()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.engine.interval):
                    await self._poke.wait()

    async def housekeeping(self) -> None:
        """Status patches not taken yet, then level-triggered finalizer chores for every resource;
        each one is a no-op when already done."""
        await self.writer.retry_unwritten()
        for resource in self.source.resources():
            if not self.elector.is_leader:
                return
            try:
                await self._tidy(resource)
            except (ApiError, OSError) as exc:
                logger.warning("%s: %s", resource.key, exc)

    async def _tidy(self, resource: Resource) -> None:
        wants_finalizer = resource.revert_on_deletion and not resource.deleting
        has_finalizer = FINALIZER in resource.finalizers
        if wants_finalizer and not has_finalizer:
            await self._add_finalizer(resource)
        elif has_finalizer and not resource.revert_on_deletion and not resource.deleting:
            await self._remove_finalizer(resource)
        elif has_finalizer and resource.deleting:
            await self._revert_then_release(resource)

    async def _add_finalizer(self, resource: Resource) -> None:
        ops: list[dict[str, Any]] = (
            [{"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}]
            if resource.finalizers
            else [{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]
        )
        await self._api.json_patch(rollout_path(resource.namespace, resource.name), ops)

    async def _remove_finalizer(self, resource: Resource) -> None:
        index = resource.finalizers.index(FINALIZER)
        path = f"/metadata/finalizers/{index}"
        await self._api.json_patch(
            rollout_path(resource.namespace, resource.name),
            [{"op": "test", "path": path, "value": FINALIZER}, {"op": "remove", "path": path}],
        )

    async def _revert_then_release(self, resource: Resource) -> None:
        """revertOnDeletion: abort a rollout in flight (alias back to stable), then let the object go."""
        engine = self.engine
        status = engine.status(resource.key) if engine is not None else None
        if engine is not None and resource.spec is not None and status is not None and status.phase in IN_FLIGHT:
            request = Request(id=f"delete-{resource.uid[:8]}", verb=Verb.ABORT, at=self._clock(), by="revertOnDeletion")
            self.inbox.submit(resource.key, request)
            engine.wake()
            return  # the engine's status change pokes us again
        if resource.spec is not None and status is None:
            return  # the engine has not looked at it yet this term
        await self._remove_finalizer(resource)


async def _wait_cleared(flag: asyncio.Event) -> None:
    while flag.is_set():
        await asyncio.sleep(0.05)


async def first(wanted: Awaitable[Any], stop: Awaitable[Any]) -> bool:
    """Wait for ``wanted`` or ``stop``; True when ``wanted`` came first."""
    wanted_task, stop_task = asyncio.ensure_future(wanted), asyncio.ensure_future(stop)
    await asyncio.wait({wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    wanted_task.cancel()
    stop_task.cancel()
    return wanted_task.done() and not wanted_task.cancelled()


__all__ = ["IN_FLIGHT", "EngineFactory", "Operator", "OperatorSettings"]
