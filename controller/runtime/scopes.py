"""One controller, several AWS accounts and regions: one engine per scope, and shards of scopes.

A rollout's **scope** is where its function lives: the role the controller assumes (None: its own
credentials), that role's external ID, and the region (``controller.document.accounts`` resolves it
from ``spec.aws`` and ``--accounts``). ``ScopedEngines`` partitions a source's ``DesiredState`` by
scope and runs one ``Engine`` per scope, each with the AWS clients of its scope; to the daemons
around it (the GitOps replica, the Kubernetes operator) it is the engine: ``apply``, ``run``,
``tick``, ``status``, ``wake``, ``ready``.

Why one engine per scope rather than one engine whose calls pick their clients:

- **An engine's reads are per account and region by nature.** Its tick asks "which alarms are in
  ALARM" once, scans the managed functions' records once (``GetResources``), reads the request
  inbox: each of these is one call *per account and region*. An engine per scope makes every such
  batch exactly one scope's, with no engine internals touched.
- **A throttled account must not slow another.** AWS's quotas are per account and region, so the
  budget is too: the clients of one account and region share one ``Budget`` (two roles in one
  account share it), and each engine reconciles in its own tasks. When account A is throttled its
  engine's calls wait for A's tokens and back off; B's engine never waits on them.
- **An account that cannot be reached is that account's problem.** A role that cannot be assumed (a
  trust policy without the controller, a wrong external ID) blocks only its scope: its rollouts are
  shown Invalid with reason ``CredentialsUnavailable`` and AWS's words, a warning Event is posted, the
  ``aws_credentials_available`` gauge says 0, and the scope is tried again with a backoff (from one
  tick to ``BLOCKED_RETRY_CAP``). Every other scope runs on. Nothing is written for a blocked scope,
  not even its records: they live in the account that cannot be reached.
- Shared by all scopes: the metrics (AWS calls labelled by account and region), health, the HTTP
  server, the notifier, the request inbox of Kubernetes mode and the leadership gate.

A rollout whose document names a role its namespace may not use is held (Invalid) in its
namespace's own scope, so it is shown by the replica that serves that scope.

**Shards.** For more rollouts than one replica should hold, ``Shard`` (``run --shard
ACCOUNT[/REGION]``) makes a replica serve only the scopes of one account (and region); a rollout
of another shard is not this replica's at all, neither shown nor orphaned. Each shard has its own
lease (``lease_name``), so N shards are N independent leader elections: the GitOps lease (or a
Kubernetes Lease) is the distributed engine, not a scheduler of ours. ``default`` names the
controller's own credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from controller.aws import AwsClients, AwsSettings, Budget, make_clients
from controller.aws.assume import AssumedRole, RoleTarget
from controller.aws.errors import AwsError
from controller.core.reasons import Reason
from controller.core.types import Event, Phase, Status, blank_status
from controller.document.accounts import DEFAULT_ACCOUNT, AccountsConfig, Refused, Scope, resolve
from controller.document.model import RolloutSpec
from controller.observability.prometheus import Metrics
from controller.runtime.desired import DesiredState
from controller.runtime.engine import Engine
from controller.runtime.sink import StatusSink

logger = logging.getLogger("controller.scopes")

#: A blocked scope is tried again after one tick, then twice as long each time, up to this.
BLOCKED_RETRY_CAP = 60.0
_SHARD = re.compile(r"^(default|[0-9]{12})(?:/([a-z]{2}(?:-[a-z]+)+-[0-9]+))?$")


# ---- which scope a rollout is in ------------------------------------------------------------------


@dataclass(frozen=True)
class Scopes:
    """How rollouts map to scopes: the ``--accounts`` config and the controller's own region."""

    region: str
    accounts: AccountsConfig | None = None

    def of(self, spec: RolloutSpec) -> Scope | Refused:
        """The rollout's scope, its region filled in; ``Refused`` when its ``spec.aws`` may not be used."""
        found = resolve(spec.aws, namespace=spec.namespace, config=self.accounts)
        return found if isinstance(found, Refused) else self._filled(found)

    def home(self, spec: RolloutSpec) -> Scope:
        """The scope of the rollout's namespace, whatever its document says: where a refusal is shown."""
        found = resolve(None, namespace=spec.namespace, config=self.accounts)
        return self._filled(found) if isinstance(found, Scope) else Scope(region=self.region)

    def placement(self, spec: RolloutSpec) -> str:
        """Where the rollout's function lives, as text: one alias name in two scopes is no duplicate."""
        found = self.of(spec)
        scope = self.home(spec) if isinstance(found, Refused) else found
        return f"{scope.role_arn or ''} {scope.region}"

    def always(self) -> list[Scope]:
        """The controller's own scope and every scope of ``--accounts``, whether or not a rollout uses it."""
        configured = self.accounts.namespaces.values() if self.accounts is not None else ()
        return list(dict.fromkeys([Scope(region=self.region), *(self._filled(scope) for scope in configured)]))

    def _filled(self, scope: Scope) -> Scope:
        return scope if scope.region else dataclasses.replace(scope, region=self.region)


@dataclass(frozen=True)
class Shard:
    """``--shard ACCOUNT[/REGION]``: the scopes one replica serves (``default``: its own credentials)."""

    account: str
    region: str | None = None

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``ValueError`` for anything but ``default``, 12 digits, either with ``/REGION``."""
        match = _SHARD.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not ACCOUNT[/REGION]: 12 digits or default, then e.g. /eu-west-1")
        return cls(account=match.group(1), region=match.group(2))

    def serves(self, scope: Scope) -> bool:
        return scope.account == self.account and (self.region is None or scope.region == self.region)

    def lease_name(self, base: str) -> str:
        """The shard's own lease name: ``base/ACCOUNT`` or ``base/ACCOUNT/REGION``."""
        return "/".join(part for part in (base, self.account, self.region) if part)

    def __str__(self) -> str:
        return self.account if self.region is None else f"{self.account}/{self.region}"


def _everything(_scope: Scope) -> bool:
    return True


def partition(
    desired: DesiredState, *, scopes: Scopes, serves: Callable[[Scope], bool] = _everything
) -> dict[Scope, DesiredState]:
    """``desired`` split by scope, only the scopes served; a refused ``spec.aws`` is held in its home scope.

    The errors of documents too broken to name a rollout go with the first scope (they are logged once).
    """
    rollouts: dict[Scope, dict[str, RolloutSpec]] = {}
    held: dict[Scope, dict[str, tuple[str, ...]]] = {}
    for key, spec in desired.rollouts.items():
        found = scopes.of(spec)
        scope = scopes.home(spec) if isinstance(found, Refused) else found
        if not serves(scope):
            continue
        rollouts.setdefault(scope, {})[key] = spec
        errors = desired.held.get(key, ())
        if isinstance(found, Refused):
            errors = (*errors, str(found))
        if errors:
            held.setdefault(scope, {})[key] = errors
    parts = {
        scope: DesiredState(
            rollouts=specs,
            held=held.get(scope, {}),
            origins={key: desired.origins[key] for key in specs if key in desired.origins},
        )
        for scope, specs in rollouts.items()
    }
    if desired.orphan_errors:
        first = next(iter(parts), None)
        if first is not None:
            parts[first] = dataclasses.replace(parts[first], orphan_errors=desired.orphan_errors)
    return parts


# ---- the clients of each scope ---------------------------------------------------------------------


class ClientsFactory:
    """The AWS clients of each scope, made once and kept (across leadership terms too).

    The controller's own clients serve the default scope and make every ``AssumeRole``; a scope with a
    role gets clients signing with that role's refreshable credentials (``controller.aws.assume``).
    The clients of one account and region share one ``Budget``. ``gate`` is every client's write fence
    (the GitOps lease), set on the clients made later too.
    """

    def __init__(
        self,
        *,
        own: AwsClients,
        settings: AwsSettings,
        metrics: Metrics,
        session_name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.own = own
        self._settings = settings
        self._metrics = metrics
        self._session_name = session_name
        self._clock = clock
        self._made: dict[Scope, AwsClients] = {}
        self._budgets: dict[tuple[str, str], Budget] = {(DEFAULT_ACCOUNT, own.region): own.budget}
        self._gate: Callable[[], bool] = own.fence.gate

    def set_gate(self, gate: Callable[[], bool]) -> None:
        """The last check before a write leaves any client (the lease's ``may_write``)."""
        self._gate = gate
        for clients in (self.own, *self._made.values()):
            clients.fence.gate = gate

    async def clients(self, scope: Scope) -> AwsClients:
        """The clients of ``scope``; ``AwsError`` when its role cannot be assumed (tried again next call)."""
        if scope.role_arn is None and scope.region == self.own.region:
            return self.own
        made = self._made.get(scope)
        if made is not None:
            return made
        account, region = scope.account, scope.region or self.own.region
        budget = self._budgets.setdefault((account, region), Budget())
        settings = dataclasses.replace(self._settings, region=region)
        observer = self._metrics.aws_observer(account=account, region=region)
        credentials = None
        if scope.role_arn is not None:
            role = AssumedRole(
                sts=self.own.sts,
                target=RoleTarget(scope.role_arn, external_id=scope.external_id, session_name=self._session_name),
                clock=self._clock,
                on_refresh=lambda error: self._refreshed(scope, error),
            )
            await role.start()
            credentials = role.credentials
        made = make_clients(settings, budget=budget, observer=observer, credentials=credentials)
        made.fence.gate = self._gate
        self._made[scope] = made
        return made

    def _refreshed(self, scope: Scope, error: Exception | None) -> None:
        region = scope.region or self.own.region
        self._metrics.credential_refresh(account=scope.account, region=region, ok=error is None)
        if scope not in self._made:
            return  # the first AssumeRole: the scope layer reports a failure on its rollouts, once
        self._metrics.scope_credentials.labels(scope.account, region).set(0 if error is not None else 1)
        if error is not None:
            logger.warning("cannot refresh the credentials of %s in %s: %s", scope.role_arn, region, error)


# ---- the engines -------------------------------------------------------------------------------------


class Engines(Protocol):
    """What the daemons drive: one ``Engine``, or ``ScopedEngines`` (one per scope) behind the same face."""

    @property
    def ready(self) -> bool: ...

    async def apply(self, desired: DesiredState) -> None: ...

    async def start(self) -> None: ...

    async def tick(self) -> None: ...

    async def run(self, *, stop: asyncio.Event, updates: AsyncIterator[DesiredState] | None = None) -> None: ...

    def status(self, key: str) -> Status | None: ...

    def wake(self) -> None: ...


NewEngine = Callable[[AwsClients, Scope], Engine]
GetClients = Callable[[Scope], Awaitable[AwsClients]]


@dataclass
class _Part:
    """One scope: its share of the desired state, its engine once it runs, or why it cannot."""

    scope: Scope
    desired: DesiredState = field(default_factory=DesiredState)
    engine: Engine | None = None
    task: asyncio.Task[None] | None = None
    # Why the scope cannot run (its role cannot be assumed, its first scan failed); "" when it can.
    blocked: str = ""
    attempts: int = 0
    retry_at: float = 0.0
    activating: bool = False
    # What was last reported for each of its rollouts while blocked (with the spec it was reported for).
    shown: dict[str, tuple[RolloutSpec, Status]] = field(default_factory=dict)


class ScopedEngines:
    """Rollouts partitioned by scope, one ``Engine`` per scope (see the module docstring).

    ``clients`` gives a scope's AWS clients (raising ``AwsError`` when they cannot be had),
    ``new_engine`` builds the engine of a scope, ``sink`` reports what blocked scopes show, ``serves``
    picks the scopes of this replica's shard, ``always`` are scopes run even without a rollout (the
    controller's own and the ``--accounts`` ones: their engines show what was left orphaned there).
    ``tick_listeners`` are called after every engine's tick and after every look at the blocked scopes.
    """

    def __init__(
        self,
        *,
        scopes: Scopes,
        clients: GetClients,
        new_engine: NewEngine,
        sink: StatusSink,
        serves: Callable[[Scope], bool] = _everything,
        always: Iterable[Scope] = (),
        metrics: Metrics | None = None,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.scopes = scopes
        self._clients = clients
        self._new_engine = new_engine
        self._sink = sink
        self._serves = serves
        self._metrics = metrics
        self._interval = interval
        self._clock = clock
        self._always = frozenset(scope for scope in always if serves(scope))
        self._parts: dict[Scope, _Part] = {scope: _Part(scope) for scope in self._always}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._started = False
        self.tick_listeners: list[Callable[[], None]] = []

    # ---- what the daemons ask -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Started, and every scope that runs has completed a tick (blocked scopes say so on their rollouts)."""
        return self._started and all(p.engine.ready for p in self._parts.values() if p.engine is not None)

    def engines(self) -> dict[Scope, Engine]:
        """The engine of every scope that runs."""
        return {scope: part.engine for scope, part in self._parts.items() if part.engine is not None}

    def blocked(self) -> dict[Scope, str]:
        """Every scope that cannot run, with why."""
        return {scope: part.blocked for scope, part in self._parts.items() if part.blocked}

    def statuses(self) -> dict[str, Status | None]:
        """Every rollout's status, whatever its scope (None: not reported yet)."""
        found: dict[str, Status | None] = {}
        for part in self._parts.values():
            if part.engine is not None:
                found.update({key: rollout.status for key, rollout in part.engine.rollouts().items()})
            else:
                found.update({key: _shown(part, key) for key in part.desired.rollouts})
        return found

    def status(self, key: str) -> Status | None:
        for part in self._parts.values():
            if key in part.desired.rollouts:
                return part.engine.status(key) if part.engine is not None else _shown(part, key)
        for part in self._parts.values():
            if part.engine is not None and (status := part.engine.status(key)) is not None:
                return status  # an orphan, shown by the engine it left
        return None

    def wake(self) -> None:
        self._wake.set()
        for part in self._parts.values():
            if part.engine is not None:
                part.engine.wake()

    async def apply(self, desired: DesiredState) -> None:
        """Adopt a source's view: each scope's engine gets its share; a new scope is started at the next look."""
        parts = partition(desired, scopes=self.scopes, serves=self._serves)
        async with self._lock:
            for scope in parts.keys() | self._parts.keys():
                share = parts.get(scope, DesiredState())
                part = self._parts.setdefault(scope, _Part(scope))
                part.desired = share
                if part.engine is not None:
                    await part.engine.apply(share)
                elif part.blocked:
                    await self._show_blocked(part)
                if not share.rollouts and part.engine is None and not part.activating and scope not in self._always:
                    del self._parts[scope]  # nothing there any more: a blocked scope no rollout uses is not tried
                    self._forget(scope)
            self._publish()
        self._wake.set()

    async def start(self) -> None:
        """Start every scope now; the controller's own scope failing is raised (AWS unreachable, no
        credentials: a one-line error at start), any other scope is blocked instead."""
        await self._activate_due(everything=True)

    async def tick(self) -> None:
        """One pass of every scope (``--once``, tests): scopes not running are tried first."""
        await self.start()
        engines = [part.engine for part in self._parts.values() if part.engine is not None]
        await asyncio.gather(*(engine.tick() for engine in engines))
        self._ticked()

    async def run(self, *, stop: asyncio.Event, updates: AsyncIterator[DesiredState] | None = None) -> None:
        """Every scope's engine until ``stop`` (each finishes its writes within its grace); blocked scopes
        are tried again meanwhile. Cancelled (leadership lost), every engine is cancelled first."""
        follower = asyncio.create_task(self._follow(updates)) if updates is not None else None
        try:
            while not stop.is_set():
                await self._look(stop)
                self._ticked()
                with contextlib.suppress(TimeoutError):
                    waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                    await asyncio.wait(waits, timeout=self._next_look(), return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
                self._wake.clear()
            tasks = [part.task for part in self._parts.values() if part.task is not None]
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if follower is not None:
                follower.cancel()
            tasks = [part.task for part in self._parts.values() if part.task is not None and not part.task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    # ---- inside ----------------------------------------------------------------------------------

    async def _follow(self, updates: AsyncIterator[DesiredState]) -> None:
        async for desired in updates:
            await self.apply(desired)

    async def _look(self, stop: asyncio.Event) -> None:
        """Start the scopes that are due (new, or blocked and past their retry instant), then run them."""
        await self._activate_due(everything=False)
        for part in self._parts.values():
            if part.engine is not None and part.task is None and not stop.is_set():
                part.task = asyncio.create_task(part.engine.run(stop=stop), name=f"engine {part.scope}")

    def _next_look(self) -> float:
        waiting = [p.retry_at for p in self._parts.values() if p.engine is None]
        if not waiting:
            return self._interval
        return max(0.0, min(self._interval, min(waiting) - self._clock()))

    async def _activate_due(self, *, everything: bool) -> None:
        """Activate the scopes not running (all of them, or those past their retry instant), side by
        side: one scope slow to answer holds up neither the others nor the source's updates."""
        now = self._clock()
        due = [
            part
            for part in self._parts.values()
            if part.engine is None and not part.activating and (everything or part.retry_at <= now)
        ]
        for part in due:
            part.activating = True
        try:
            await asyncio.gather(
                *(self._activate(part, strict=everything and part.scope.role_arn is None) for part in due)
            )
        finally:
            for part in due:
                part.activating = False
        self._started = True
        self._publish()

    async def _activate(self, part: _Part, *, strict: bool) -> None:
        """Clients, engine, first scan of the records; a failure blocks the scope (raised when ``strict``)."""
        try:
            aws = await self._clients(part.scope)
            engine = self._new_engine(aws, part.scope)
            engine.tick_listeners.append(self._ticked)
            await engine.apply(part.desired)
            await engine.start()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Whatever stops a scope from starting blocks that scope alone; only the controller's own
            # scope, at start, is the controller's failure.
            if strict:
                raise
            await self._block(part, exc)
            return
        async with self._lock:
            # The source may have moved on while the scope was started: the engine gets its latest share.
            await engine.apply(part.desired)
            if part.blocked:
                logger.info("%s: reachable again; its %d rollouts run", part.scope, len(part.desired.rollouts))
            part.engine, part.blocked, part.attempts, part.shown = engine, "", 0, {}
        if self._metrics is not None:
            self._metrics.scope_credentials.labels(part.scope.account, part.scope.region or "").set(1)

    async def _block(self, part: _Part, exc: Exception) -> None:
        if isinstance(exc, AwsError):
            why = f"{exc.code}: {exc.message}" if exc.message else exc.code
        else:
            why = f"{type(exc).__name__}: {exc}"
        delay = min(BLOCKED_RETRY_CAP, self._interval * 2 ** min(part.attempts, 10))
        part.attempts += 1
        part.retry_at = self._clock() + delay
        if why != part.blocked:
            logger.warning(
                "%s: cannot act there (%s); its %d rollouts wait, tried again in %.1fs",
                part.scope,
                why,
                len(part.desired.rollouts),
                delay,
            )
        part.blocked = why
        if self._metrics is not None:
            self._metrics.scope_credentials.labels(part.scope.account, part.scope.region or "").set(0)
        async with self._lock:
            await self._show_blocked(part)

    async def _show_blocked(self, part: _Part) -> None:
        """Each rollout of a blocked scope: Invalid ``CredentialsUnavailable``, once per change."""
        where = part.scope.role_arn or "the controller's own credentials"
        message = (
            f"cannot act in account {part.scope.account} ({where}, {part.scope.region}): nothing in AWS is "
            "touched until it can; see the error"
        )
        for key in [k for k in part.shown if k not in part.desired.rollouts]:
            gone, _ = part.shown.pop(key)
            await self._sink.removed(spec=gone)
        for key, spec in part.desired.rollouts.items():
            previous = _shown(part, key)
            status = dataclasses.replace(
                previous or blank_status(),
                phase=Phase.INVALID,
                reason=Reason.CREDENTIALS_UNAVAILABLE,
                message=message,
                errors=(part.blocked, *part.desired.held.get(key, ())),
            )
            if status == previous:
                continue
            part.shown[key] = (spec, status)
            await self._sink.status_changed(spec=spec, status=status, previous=previous)
            if previous is None or previous.errors != status.errors:
                event = Event(Reason.CREDENTIALS_UNAVAILABLE, f"{message}: {part.blocked}", warning=True)
                await self._sink.event(spec=spec, event=event)

    def _publish(self) -> None:
        if self._metrics is None:
            return
        for part in self._parts.values():
            region = part.scope.region or ""
            self._metrics.scope_rollouts.labels(part.scope.account, region).set(len(part.desired.rollouts))

    def _forget(self, scope: Scope) -> None:
        if self._metrics is None or any(s.account == scope.account and s.region == scope.region for s in self._parts):
            return
        for gauge in (self._metrics.scope_rollouts, self._metrics.scope_credentials):
            with contextlib.suppress(KeyError):
                gauge.remove(scope.account, scope.region or "")

    def _ticked(self) -> None:
        for listener in self.tick_listeners:
            listener()


def _shown(part: _Part, key: str) -> Status | None:
    shown = part.shown.get(key)
    return shown[1] if shown is not None else None


__all__ = [
    "BLOCKED_RETRY_CAP",
    "ClientsFactory",
    "Engines",
    "ScopedEngines",
    "Scopes",
    "Shard",
    "partition",
]
