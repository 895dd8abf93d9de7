"""Kubernetes mode: LambdaRollout custom resources in, the same engine as GitOps mode, ``.status`` out.

The only module that imports kopf, and it uses little of it: kopf watches the resources (list and
watch, reconnects, discovery, login) and hands every event to ``ResourceSource``, which turns the
resources into the ``DesiredState`` the engine already understands. kopf's handlers write nothing:
no finalizers, no progress annotations. Every write to Kubernetes (status, Events, our finalizer,
clearing a handled control request) is made by the *leader* through ``KubeApi``, so "only one
replica writes" holds for Kubernetes exactly as it does for AWS:

- ``KubeStatusWriter`` is an engine ``StatusSink``: each status change becomes a ``/status`` patch
  (phase, versions, weight, step, conditions, observedGeneration, history), each transition an Event;
- ``Operator.housekeeping`` runs on the leader, level-triggered on every resource change and every
  tick: it writes Invalid statuses (no engine, no AWS), forwards control requests, and keeps our
  finalizer exactly on resources with ``spec.revertOnDeletion: true``.

Control requests: ``kubectl lambda-rollouts abort NAME`` patches the annotation ``REQUEST_ANNOTATION``
(RBAC decides who may). The leader hands it to its engine (``Engine.request``), which gives it to the
core exactly as a GitOps-mode request read from the function's request tag, and records the
request's id in the durable record; the annotation is cleared only once ``Engine.handled`` says that
record is written, so a request survives a leadership change. The durable record on the function
stays authoritative: a resource deleted and applied again resumes where it was.

Leadership gates the engine's AWS writes (``can_write``): a replica that loses its Lease stops
writing before its next AWS call, even in the middle of a tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf

from controller.core.codec import decode_request
from controller.core.types import Event, HistoryEntry, Phase, Request, Status, Verb, Warmup, invalid_status
from controller.document.loader import LoadedRollout, check_duplicates, parse_rollout
from controller.document.model import RolloutSpec
from controller.kubectl_plugin import REQUEST_ANNOTATION
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.kubeapi import ApiError, Endpoint, KubeApi, decode_ca
from controller.runtime.leader import LeaderElector
from controller.runtime.sink import AliasWritten, Reconciled, StatusSink
from controller.sources import DesiredState

GROUP, VERSION, PLURAL, KIND = "lambda.rollouts.dev", "v1alpha1", "lambdarollouts", "LambdaRollout"
FINALIZER = f"{GROUP}/revert-on-deletion"
COMPONENT = "lambda-rollouts"
# Phases in which the alias may carry the canary: deleting with revertOnDeletion waits for these to end.
IN_FLIGHT = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})
ACTIVE = frozenset({Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})
FAILED = frozenset({Phase.DEGRADED, Phase.ROLLED_BACK, Phase.INVALID})

logger = logging.getLogger("controller.kube")


def rollout_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
    return f"{path}/{subresource}" if subresource else path


# ---- the source: resources as kopf sees them ------------------------------------------------------


@dataclass
class Resource:
    """What the watch last showed of one LambdaRollout."""

    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    spec: RolloutSpec | None = None  # the last valid spec (kept while the document is invalid)
    errors: tuple[str, ...] = ()
    revert_on_deletion: bool = False
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    request: str | None = None
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def involved_object(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


class ResourceSource:
    """The LambdaRollouts seen by the watch, as ``DesiredState`` updates for the engine."""

    def __init__(self) -> None:
        self._resources: dict[str, Resource] = {}
        self._changed = asyncio.Event()
        self.loaded = False  # set once kopf finished the initial listing

    def get(self, key: str) -> Resource | None:
        return self._resources.get(key)

    def resources(self) -> list[Resource]:
        return list(self._resources.values())

    def seen(self, body: Mapping[str, Any]) -> Resource:
        """Take in an object from the watch: parse its spec, keep the last valid one."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta["name"]
        key = f"{namespace}/{name}"
        previous = self._resources.get(key)
        spec, errors = parse_rollout(dict(body), default_namespace=namespace)
        if spec is not None:
            spec = dataclasses.replace(spec, generation=int(meta.get("generation") or 0))
        kept = spec if spec is not None else (previous.spec if previous and previous.uid == meta.get("uid") else None)
        resource = Resource(
            namespace=namespace,
            name=name,
            uid=meta.get("uid") or "",
            generation=int(meta.get("generation") or 0),
            spec=kept,
            errors=tuple(f"{e.path}: {e.message}" if e.path else e.message for e in errors),
            revert_on_deletion=bool((body.get("spec") or {}).get("revertOnDeletion")),
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=tuple(meta.get("finalizers") or ()),
            request=(meta.get("annotations") or {}).get(REQUEST_ANNOTATION),
            status=dict(body.get("status") or {}),
        )
        self._resources[key] = resource
        if previous is None or (previous.spec, previous.errors) != (resource.spec, resource.errors):
            self._changed.set()
        return resource

    def gone(self, namespace: str, name: str) -> None:
        if self._resources.pop(f"{namespace}/{name}", None) is not None:
            self._changed.set()

    def desired(self) -> DesiredState:
        """Valid resources are managed; one that became invalid is held on its last valid spec.

        A resource that was never valid has no spec: the engine never sees it (its Invalid status is
        written by the operator), so no AWS call is made for it.
        """
        rollouts = {r.key: r.spec for r in self._resources.values() if r.spec is not None}
        held = {r.key: r.errors for r in self._resources.values() if r.spec is not None and r.errors}
        # Two resources driving the same function alias would fight over it: both are held, naming
        # each other, until one is removed or changed (as the GitOps loader refuses both files).
        clashes = check_duplicates([LoadedRollout(spec, key, 0, {}) for key, spec in rollouts.items()])
        for clash in clashes:
            held[clash.file] = (*held.get(clash.file, ()), f"{clash.path}: {clash.message}")
        return DesiredState(rollouts=rollouts, held=held)

    async def updates(self) -> AsyncIterator[DesiredState]:
        """The current state at once, then one after each change (changes in between coalesce)."""
        while True:
            self._changed.clear()
            yield self.desired()
            await self._changed.wait()


# ---- the status sink ------------------------------------------------------------------------------


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_for(status: Status, *, previous: Sequence[Mapping[str, Any]] = (), now: float) -> list[dict[str, Any]]:
    """Ready / Progressing / Degraded from the phase; a condition keeps its time until it flips."""
    before = {c.get("type"): c for c in previous}
    wanted = {
        "Ready": status.phase is Phase.HEALTHY,
        "Progressing": status.phase in ACTIVE,
        "Degraded": status.phase in FAILED,
    }
    conditions = []
    for kind, true in wanted.items():
        value = "True" if true else "False"
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        conditions.append(
            {
                "type": kind,
                "status": value,
                "reason": status.reason or str(status.phase),
                "message": status.message,
                "lastTransitionTime": since or rfc3339(now),
            }
        )
    return conditions


def history_entry(entry: HistoryEntry) -> dict[str, Any]:
    at = rfc3339(entry.at)
    return {"version": entry.version, "outcome": entry.outcome, "reason": entry.reason, "at": at, "by": entry.by}


def status_body(
    status: Status, *, generation: int, previous: Mapping[str, Any] | None = None, now: float
) -> dict[str, Any]:
    """The resource's ``.status`` for a core ``Status`` (a merge patch: None removes a field)."""
    return {
        "phase": str(status.phase),
        "stableVersion": status.stable_version,
        "canaryVersion": status.canary_version,
        "canaryWeight": status.canary_weight,
        "currentStep": status.current_step,
        "steps": status.steps,
        "stepStartedAt": rfc3339(status.step_started_at),
        "warmup": warmup_body(status.warmup),
        "message": status.message,
        "reason": status.reason,
        "errors": list(status.errors),
        "observedGeneration": generation,
        "conditions": conditions_for(status, previous=(previous or {}).get("conditions") or (), now=now),
        "history": [history_entry(entry) for entry in status.history],
    }


def warmup_body(warmup: Warmup | None) -> dict[str, Any] | None:
    """``.status.warmup`` while the new version's provisioned concurrency warms (None removes it)."""
    if warmup is None:
        return None
    return {
        "version": warmup.version,
        "allocated": warmup.allocated,
        "requested": warmup.requested,
        "status": warmup.status,
    }


class KubeStatusWriter:
    """Mirrors the engine's statuses into ``.status`` and its transitions into Events; leader only."""

    def __init__(
        self,
        api: KubeApi,
        source: ResourceSource,
        *,
        is_leader: Callable[[], bool],
        identity: str,
        clock: Callable[[], float],
    ) -> None:
        self._api = api
        self._source = source
        self._is_leader = is_leader
        self._identity = identity
        self._clock = clock
        # The body last written per rollout, with the uid of the resource it went to: a resource
        # deleted and created again (same key, new uid) starts from its own, empty status.
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        resource = self._source.get(spec.key)
        if resource is not None:
            await self.write(resource, status, generation=spec.generation)

    async def write(self, resource: Resource, status: Status, *, generation: int) -> None:
        """Patch ``.status`` unless it already says the same (re-sent after a leadership change).

        ``generation`` is the one the status was computed from: ``observedGeneration`` tells a user
        whether the controller has seen their last edit yet.
        """
        if not self._is_leader():
            return
        uid, written = self._written.get(resource.key, ("", {}))
        previous = written if uid == resource.uid and written else resource.status
        body = status_body(status, generation=generation, previous=previous, now=self._clock())
        if _same_status(previous, body):
            return
        try:
            await self._api.merge_patch(rollout_path(resource.namespace, resource.name, "status"), {"status": body})
        except ApiError as exc:
            if exc.status != 404:  # gone meanwhile: nothing to report on
                raise
            return
        self._written[resource.key] = (resource.uid, body)

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        resource = self._source.get(spec.key)
        if resource is None or not self._is_leader():
            return
        await self.post_event(resource, event)

    async def post_event(self, resource: Resource, event: Event) -> None:
        now = rfc3339(self._clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{resource.name}.", "namespace": resource.namespace},
            "involvedObject": resource.involved_object(),
            "reason": event.reason[:128],
            "message": event.message[:1024],
            "type": "Warning" if event.warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._api.post(f"/api/v1/namespaces/{resource.namespace}/events", body)

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        return  # not part of .status: metrics report it

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        return  # the status change that follows says it

    async def removed(self, *, spec: RolloutSpec) -> None:
        # The resource is gone; its alias is left as it is. Nothing to write.
        self._written.pop(spec.key, None)


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal apart from condition timestamps (which only move when a condition flips)."""

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or ()]
        return {**{k: v for k, v in status.items() if v is not None}, "conditions": conditions}

    return strip(old) == strip(new)


# ---- the operator: leadership, engine, housekeeping -----------------------------------------------


@dataclass(frozen=True)
class OperatorSettings:
    identity: str
    engine: EngineSettings = field(default_factory=EngineSettings)
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # How long a clean shutdown waits for the tick in flight to finish its writes.
    shutdown_grace: float = 10.0


class EngineFactory(Protocol):
    """Builds the engine of one leadership term (the daemon wiring adds its log and metrics sinks)."""

    def __call__(self, *, sinks: Sequence[StatusSink], can_write: Callable[[], bool]) -> Engine: ...


class Operator:
    """One replica: follows the resources always, runs the engine and writes only while leading."""

    def __init__(
        self,
        *,
        api: KubeApi,
        elector: LeaderElector,
        settings: OperatorSettings,
        new_engine: EngineFactory,
        clock: Callable[[], float],
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.source = ResourceSource()
        self.settings = settings
        self.elector = elector
        self.engine: Engine | None = None
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
        if event_type == "DELETED":
            self.source.gone(meta.get("namespace") or "default", meta["name"])
        else:
            self.source.seen(body)
        self._poke.set()

    # ---- leadership ----

    def lost_leadership(self) -> None:
        """Called by the elector the moment it steps down: everything that writes stops now."""
        for task in list(self._writers):
            task.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Wait to lead, lead until leadership is lost or ``stop``; again and again."""
        while not stop.is_set():
            if not await _first(self.elector.leading.wait(), stop.wait()):
                return
            await self._lead(stop)

    async def _lead(self, stop: asyncio.Event) -> None:
        # A fresh engine per term: the previous leader may have moved records since our last term.
        # Its AWS writes stop the moment the Lease is lost, before this task is even cancelled.
        engine = self.engine = self._new_engine(sinks=(self.writer,), can_write=lambda: self.elector.is_leader)
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
                # Clean shutdown: the tick in flight completes its AWS writes, then the lease goes.
                engine_stop.set()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(engine_task), timeout=self.settings.shutdown_grace)
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
            except Exception:
                logger.exception("housekeeping failed; retrying at the next tick")
            if self._on_tick is not None:
                self._on_tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), timeout=self.settings.engine.interval)

    async def housekeeping(self) -> None:
        """Level-triggered chores for every resource; each one is a no-op when already done."""
        for resource in self.source.resources():
            if not self.elector.is_leader:
                return
            try:
                await self._tidy(resource)
            except (ApiError, OSError) as exc:
                logger.warning("%s: %s", resource.key, exc)

    async def _tidy(self, resource: Resource) -> None:
        if resource.spec is None and resource.errors:
            await self.writer.write(resource, invalid_status(tuple(resource.errors)), generation=resource.generation)
        if resource.request:
            await self._forward_request(resource)
        wants_finalizer = resource.revert_on_deletion and not resource.deleting
        has_finalizer = FINALIZER in resource.finalizers
        if wants_finalizer and not has_finalizer:
            await self._add_finalizer(resource)
        elif has_finalizer and not resource.revert_on_deletion and not resource.deleting:
            await self._remove_finalizer(resource)
        elif has_finalizer and resource.deleting:
            await self._revert_then_release(resource)

    async def _forward_request(self, resource: Resource) -> None:
        """Hand the resource's request to the engine; clear the annotation once it is durably handled."""
        assert resource.request is not None
        request = decode_request(resource.request)
        if request is None:
            logger.warning("%s: ignoring a malformed request annotation %r", resource.key, resource.request)
        elif resource.spec is None or self.engine is None:
            return  # nothing to act on until the document is valid; keep the request
        elif not self.engine.handled(resource.key, request.id):
            self.engine.request(resource.key, request)
            return  # cleared on a later pass: the engine's status change pokes us again
        # Only this exact request: a newer one patched in meanwhile must not be lost.
        await self._api.json_patch(
            rollout_path(resource.namespace, resource.name),
            [
                {"op": "test", "path": _annotation_path(), "value": resource.request},
                {"op": "remove", "path": _annotation_path()},
            ],
        )

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
            engine.request(resource.key, request)
            return  # the engine's status change pokes us again
        if resource.spec is not None and status is None:
            return  # the engine has not looked at it yet this term
        await self._remove_finalizer(resource)


def _annotation_path() -> str:
    # JSON pointer: "/" in the key is escaped as "~1".
    return "/metadata/annotations/" + REQUEST_ANNOTATION.replace("~", "~0").replace("/", "~1")


async def _wait_cleared(flag: asyncio.Event) -> None:
    while flag.is_set():
        await asyncio.sleep(0.05)


async def _first(wanted: Awaitable[Any], stop: Awaitable[Any]) -> bool:
    """Wait for ``wanted`` or ``stop``; True when ``wanted`` came first."""
    wanted_task, stop_task = asyncio.ensure_future(wanted), asyncio.ensure_future(stop)
    await asyncio.wait({wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    wanted_task.cancel()
    stop_task.cancel()
    return wanted_task.done() and not wanted_task.cancelled()


# ---- kopf wiring ----------------------------------------------------------------------------------


Login = Callable[[], Awaitable[kopf.ConnectionInfo]]


async def default_login() -> kopf.ConnectionInfo:
    """In a pod: the service account; elsewhere: the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""
    settings = kopf.OperatorSettings()
    connection = kopf.login_with_service_account(settings=settings, logger=logger) or kopf.login_with_kubeconfig(
        settings=settings, logger=logger
    )
    if connection is None:
        raise kopf.LoginError("no Kubernetes credentials: neither a service account nor a kubeconfig")
    return connection


def endpoint_of(info: kopf.ConnectionInfo) -> Endpoint:
    return Endpoint(
        server=info.server,
        token=info.token,
        insecure=bool(info.insecure),
        ca_path=_path_or_none(info.ca_path),
        ca_data=decode_ca(info.ca_data),
        certificate_path=_path_or_none(info.certificate_path),
        private_key_path=_path_or_none(info.private_key_path),
    )


def _path_or_none(path: Any) -> str | None:
    return os.fsdecode(path) if path else None


def build_registry(operator: Operator, login: Login) -> kopf.OperatorRegistry:
    """kopf handlers for one operator instance (a registry each: tests run two in one process)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return await login()

    @kopf.on.startup(registry=registry)
    async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events are ours to post (by the leader); kopf must not post its own from every replica.
        settings.posting.enabled = False
        # Only exact namespaces are watched: no namespace scanning (no globs to resolve).
        settings.scanning.disabled = bool(operator.settings.namespaces)
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def _event(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        operator.watched(event.get("type"), dict(body))

    return registry


async def run_operator(
    *,
    operator: Operator,
    login: Login,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> None:
    """kopf, the leader election and the operator, until ``stop`` (or until kopf itself exits)."""
    registry = build_registry(operator, login)
    namespaces = operator.settings.namespaces
    kopf_ready = asyncio.Event()
    kopf_task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            standalone=True,  # leadership is ours (a Lease), not kopf peering
            clusterwide=not namespaces,
            namespaces=namespaces,
            stop_flag=stop,
            ready_flag=kopf_ready,
            memo=kopf.Memo(),
        )
    )
    elector_task = asyncio.create_task(operator.elector.run(stop))
    operator_task = asyncio.create_task(operator.run(stop))
    tasks = {kopf_task, elector_task, operator_task}
    try:
        if await _first(kopf_ready.wait(), stop.wait()):
            operator.source.loaded = True
            if ready is not None:
                ready.set()
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        # The operator first (its engine finishes in-flight writes), then the lease is released.
        await asyncio.gather(operator_task, return_exceptions=True)
        await asyncio.gather(elector_task, kopf_task, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
