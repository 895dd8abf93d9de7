"""Reconcile one rollout: observe, decide, act, record.

The steps, in order, each a small function:

1. observe  - the function's record (cached tags) and an ``Observed`` from the fewest reads;
2. decide   - the pure core; when it asks for an alias write but the alias was not read this tick,
              read it and decide again (someone may have moved it by hand: drift is the core's call);
              likewise when it needs the provisioned-concurrency configs (warm-up);
3. act      - write-ahead: persist the record naming the pending alias write, write the alias with
              the RevisionId just read, then persist the confirmed record; a controller killed between
              any two of these finds the pending write in the record and completes it. The confirmed
              record is the core's next answer on the alias as just written when that answer needs no
              AWS call (a pause begins, a promotion is recorded): what the next tick would write in a
              record write of its own goes in the same one;
4. record   - persist the record if it changed (and nothing at all if it did not), then take the
              control request it handled out of the inbox (``controller.runtime.inbox``).

A lifecycle hook (``RunHook``) is only *started* in step 3 (``HookRunner``): it runs beside the
reconciles, and its answer is handed to a later decide (``Observed.hook_answers``), which records it
in the record persisted in step 4. A controller that dies while a hook runs has recorded nothing, so
the hook runs again (never skipped); no reconcile ever waits for a hook.

Declared settings (reserved and provisioned concurrency, async config) are written in step 3 after
the alias write, in the order the core gives; they are read only when declared, on a spec change,
on the slow drift check and (provisioned configs) while the new version is warming.

Bad input (the core says ``Invalid``: missing function, version or alarm, role mismatch) stops after
step 2: no alias write, no tag write. ``preview`` runs steps 1-2 only, for ``plan`` and ``get``.

A rollback is served first by the API budget along its whole path: the alias re-read its write
needs, the write-ahead record, the alias write, the confirmed record and the request tag's removal
(``priority``), so it never queues behind routine calls of other rollouts. The record confirming a
routine alias write goes the other way (``behind_others``): the traffic has moved and the write-ahead
record already names the write, so other rollouts' first moves go before it when the budget is
short (a cold start of a thousand), and nothing waits for it when it is not. Its content is fixed
before it waits (the step starts when the alias was written), so the wait shortens no pause.

Cancellation (a stop past its grace, leadership lost, an urgent rollback overtaking a slow reconcile)
is safe at any ``await``: before the first write nothing changed; a publish is idempotent (found again
by its code hash); settings are level-triggered and re-read; a hook's answer is recorded only once it
came and was handed over, so at worst it runs again; the
record tags go in one ``TagResource`` (stale chunk keys left by a cancelled ``UntagResource`` are
ignored by the decoder: the head tag says how many chunks there are); from the write-ahead persist
until the confirming one the record names the pending alias write, so whoever reconciles next
completes it, whether the cancelled ``UpdateAlias`` landed or not (a cancelled call may still land
from its worker thread); a request tag is removed only after the record saying it was handled.

Every AWS write (publish, record tags, alias, request tag) first asks the write gate ``can_write``;
a closed gate raises ``WritesStopped`` at once, so a replica that just lost leadership stops writing
in the middle of a reconcile instead of finishing it beside the new leader. The write-ahead record
makes that stop safe: whoever leads next completes a half-done write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from controller.analysis.hooks import HookRunner
from controller.aws import AwsClients
from controller.aws.budget import behind_others
from controller.aws.lambda_ import AliasState
from controller.core.context import warming
from controller.core.decide import confirm, decide
from controller.core.ownership import OWNER_TAG, Ownership
from controller.core.reasons import Reason
from controller.core.types import (
    Decision,
    DeleteProvisionedConcurrency,
    Phase,
    PublishVersion,
    PutProvisionedConcurrency,
    PutReservedConcurrency,
    Record,
    RunHook,
    SettingAction,
    UpdateAlias,
)
from controller.document.model import RolloutSpec
from controller.document.ownership_config import OwnershipPolicy
from controller.runtime.inbox import Inbox
from controller.runtime.observe import Observation, Observer, declares_provisioned, declares_settings, from_the_tick
from controller.runtime.reads import Inputs
from controller.runtime.records import FunctionTags, RecordStore, managed_entries

Clock = Callable[[], float]
# Told about each alias write AWS accepted, as soon as it returns (the engine reports it).
AliasWriteListener = Callable[[RolloutSpec, UpdateAlias], Awaitable[None]]


class WritesStopped(Exception):
    """The write gate closed (leadership lost): no further AWS write is made by this reconcile."""


def _always() -> bool:
    return True


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile did: the core's decision and whether the aliases were read (drift check)."""

    decision: Decision
    observation: Observation
    aliases_read: bool
    wrote: bool = False


@dataclass(frozen=True)
class Wanted:
    """What one observation reads beyond the cached and shared state."""

    aliases: bool
    settings: bool = False
    provisioned: bool = False


def is_rollback(decision: Decision) -> bool:
    """The decision restores stable (or otherwise rolls back): its AWS calls go first in the budget."""
    return any(isinstance(action, UpdateAlias) and action.rollback for action in decision.actions)


def needs_alias(decision: Decision) -> bool:
    """The core asked for a fresh alias read, or for an alias write that must carry a fresh RevisionId."""
    return decision.read_alias or any(isinstance(action, UpdateAlias) for action in decision.actions)


def more_reads(decision: Decision, want: Wanted) -> Wanted | None:
    """The reads a decision needs that were not made (None: it can be acted on as it is)."""
    aliases = want.aliases or needs_alias(decision)
    provisioned = want.provisioned or decision.read_provisioned
    if (aliases, provisioned) == (want.aliases, want.provisioned):
        return None
    return dataclasses.replace(want, aliases=aliases, provisioned=provisioned)


class Reconciler:
    """The four steps for one rollout; stateless apart from the shared caches it is given."""

    def __init__(
        self,
        *,
        aws: AwsClients,
        store: RecordStore,
        observer: Observer,
        clock: Clock,
        time_scale: float = 1.0,
        can_write: Callable[[], bool] = _always,
        on_alias_written: AliasWriteListener | None = None,
        ownership: OwnershipPolicy | None = None,
        owner_max_age: float = 600.0,
        hooks: HookRunner | None = None,
        inbox: Inbox | None = None,
        on_decided: Callable[[RolloutSpec, Decision], None] | None = None,
    ) -> None:
        self._ownership = ownership
        # Runs lifecycle hooks beside the reconciles; None for read-only previews, which never act.
        self._hooks = hooks
        # Where control requests wait; a handled one is taken out of it (None: previews, which never act).
        self._inbox = inbox
        # Told the decision a reconcile acts on, before it acts (the engine marks rollbacks in flight).
        self._on_decided = on_decided
        # The owner tag is the one tag others set: re-read on a slow alias check once this old.
        self._owner_max_age = owner_max_age
        self._aws = aws
        self._store = store
        self._observer = observer
        self._clock = clock
        self._time_scale = time_scale
        self._can_write = can_write
        self._on_alias_written = on_alias_written

    def _gate(self) -> None:
        """Called right before every AWS write: a closed gate stops this reconcile there."""
        if not self._can_write():
            raise WritesStopped("write gate closed: this replica no longer writes")

    async def reconcile(self, inputs: Inputs, *, read_aliases: bool, urgent: bool = False) -> ReconcileResult:
        """One level-triggered pass; repeating it with nothing changed in AWS writes nothing.

        ``urgent``: the caller knows the core rolls back (``would_roll_back``), so even the reads made
        before deciding go first in the budget, not only the calls after the decision.
        """
        spec = inputs.spec
        fn, record = await self._load(spec)
        outcome = await self._observe_and_decide(inputs, fn, record, read_aliases=read_aliases, urgent=urgent)
        if fn is None or outcome.decision.status.phase is Phase.INVALID:
            return outcome
        if self._on_decided is not None:
            self._on_decided(spec, outcome.decision)
        wrote, decision = await self._act(spec, fn, outcome)
        observed = outcome.observation.observed
        if observed.settings_read:
            self._observer.settings_checked(spec)
        if self._hooks is not None and observed.hook_answers:
            # The core has them and its record is persisted: they are never handed over again.
            self._hooks.delivered(spec.key, observed.hook_answers)
        return ReconcileResult(decision, outcome.observation, outcome.aliases_read, wrote)

    def would_roll_back(self, inputs: Inputs, now: float) -> bool:
        """Whether the core, on what is known right now, rolls the rollout back: no AWS call.

        The engine asks this about a rollout it is not reconciling this tick (one still in flight,
        one backing off after a failure): the rules that roll back (alarms, failed hooks and
        analysis, ``abort``, the progress deadline) need only the cached record and the tick's
        shared reads, so a slow AWS call or a backoff never delays a rollback by more than a tick.
        """
        spec = inputs.spec
        fn = self._store.known(spec.function_name)
        if fn is None:
            return False
        try:
            record = self._store.record(fn, spec.alias)
        except ValueError:  # a corrupt record: the regular reconcile reports it
            return False
        if record is None or (record.canary is None and record.pending is None):
            return False
        observed = dataclasses.replace(from_the_tick(inputs), ownership=self._owners(spec, fn))
        return is_rollback(decide(spec, record, observed, now, time_scale=self._time_scale))

    async def preview(self, inputs: Inputs) -> ReconcileResult:
        """Steps 1-2 with the aliases read: what the next reconcile would do. Writes nothing."""
        fn, record = await self._load(inputs.spec)
        return await self._observe_and_decide(inputs, fn, record, read_aliases=True)

    # ---- 1. observe ----------------------------------------------------------------------------

    async def _load(self, spec: RolloutSpec) -> tuple[FunctionTags | None, Record | None]:
        fn = await self._store.function(spec.function_name)
        record = self._store.record(fn, spec.alias) if fn is not None else None
        return fn, record

    async def _observe(
        self,
        inputs: Inputs,
        fn: FunctionTags | None,
        record: Record | None,
        *,
        want: Wanted,
        priority: bool = False,
    ) -> Observation:
        exists = fn is not None
        observation = await self._observer.observe(
            inputs,
            record,
            function_exists=exists,
            read_aliases=want.aliases and exists,
            read_settings=want.settings and exists,
            read_provisioned=want.provisioned and exists,
            priority=priority,
        )
        if fn is None:
            return observation
        observed = dataclasses.replace(observation.observed, ownership=self._owners(inputs.spec, fn))
        return dataclasses.replace(observation, observed=observed)

    def _owners(self, spec: RolloutSpec, fn: FunctionTags) -> Ownership:
        """The ownership facts from the cached tags and the config: no AWS call."""
        policy = self._ownership
        return Ownership(
            owner_tag=fn.tags.get(OWNER_TAG),
            managers=tuple(managed_entries(fn.tags).values()),
            allowed=policy.patterns_for(spec.namespace) if policy is not None else None,
            arn=fn.arn,
        )

    async def _owner_changed(self, fn: FunctionTags, decision: Decision, *, slow_check: bool) -> bool:
        """Re-read the owner tag when a refusal may have been lifted, or on a slow check once it is old.

        A refused rollout is retried with backoff, so a fixed tag is seen within a minute; a tag that
        now refuses a running rollout is seen at its next slow alias (drift) check.
        """
        refused = decision.status.phase is Phase.INVALID and decision.status.reason == Reason.NOT_OWNER
        old = time.monotonic() - fn.owner_read_at >= self._owner_max_age
        if not (refused or (slow_check and old)):
            return False
        return await self._store.refresh_owner(fn)

    def _wanted(self, spec: RolloutSpec, record: Record | None, *, read_aliases: bool) -> Wanted:
        # Settings: on a spec change and with the (slow) alias reads; provisioned configs with them
        # and, while warming, every tick: that is what the rollout waits for.
        settings = declares_settings(spec) and (read_aliases or self._observer.settings_due(spec))
        warm = record is not None and warming(spec, record)
        return Wanted(read_aliases, settings, declares_provisioned(spec) and (settings or warm))

    # ---- 2. decide -----------------------------------------------------------------------------

    async def _observe_and_decide(
        self,
        inputs: Inputs,
        fn: FunctionTags | None,
        record: Record | None,
        *,
        read_aliases: bool,
        urgent: bool = False,
    ) -> ReconcileResult:
        spec = inputs.spec
        # A write left half-done by a crash is completed against the alias as it is now.
        read_aliases = read_aliases or (record is not None and record.pending is not None)
        want = self._wanted(spec, record, read_aliases=read_aliases)
        observation = await self._observe(inputs, fn, record, want=want, priority=urgent)
        decision = self._decide(spec, record, observation)
        if fn is not None and await self._owner_changed(fn, decision, slow_check=want.aliases):
            observed = dataclasses.replace(observation.observed, ownership=self._owners(spec, fn))
            observation = dataclasses.replace(observation, observed=observed)
            decision = self._decide(spec, record, observation)
        # At most twice: the alias (first sight, a write), then the warm-up's configs.
        for _ in range(2):
            more = more_reads(decision, want)
            if more is None or fn is None:
                break
            want = more
            # A rollback decided without the alias: the read its write needs goes first too.
            observation = await self._observe(inputs, fn, record, want=want, priority=is_rollback(decision))
            decision = self._decide(spec, record, observation)
        return ReconcileResult(decision, observation, aliases_read=want.aliases and fn is not None)

    def _decide(self, spec: RolloutSpec, record: Record | None, observation: Observation) -> Decision:
        return decide(spec, record, observation.observed, self._clock(), time_scale=self._time_scale)

    # ---- 3. act --------------------------------------------------------------------------------

    async def _act(self, spec: RolloutSpec, fn: FunctionTags, outcome: ReconcileResult) -> tuple[bool, Decision]:
        """Apply the actions in order, write-ahead around alias writes; returns whether AWS changed and
        the decision whose record was persisted last (the core's answer after the writes, if it took it)."""
        final = outcome.decision
        record = outcome.decision.record
        rollback = is_rollback(outcome.decision)
        aliases: dict[str, AliasState | None] = dict(outcome.observation.aliases)
        alias_written = False
        for action in outcome.decision.actions:
            if isinstance(action, PublishVersion):
                await self._publish(spec, action)
                continue
            if isinstance(action, RunHook):
                self._start_hook(spec, action)
                continue
            if not isinstance(action, UpdateAlias):
                await self._apply_setting(spec, action)
                continue
            if not alias_written and record.pending is not None and outcome.decision.record_changed:
                await self._persist(spec, fn, record, priority=rollback)
            aliases[action.write.alias] = await self._write_alias(spec, action, aliases)
            alias_written = True
            if self._on_alias_written is not None:
                await self._on_alias_written(spec, action)
        if alias_written and record.pending is not None:
            after = self._after_writes(spec, outcome, aliases)
            if after is not None:
                final, record = after, after.record
            else:
                record = confirm(record, self._clock())
        # ---- 4. record ----
        persisted = alias_written or outcome.decision.record_changed
        if persisted:
            # Confirming a routine move: the other rollouts' moves go first (see the module docstring).
            with behind_others() if alias_written and not rollback else contextlib.nullcontext():
                await self._persist(spec, fn, record, priority=rollback)
        await self._clear_handled_request(spec, record, outcome, priority=rollback)
        return persisted or alias_written or bool(outcome.decision.actions), final

    def _after_writes(
        self, spec: RolloutSpec, outcome: ReconcileResult, aliases: Mapping[str, AliasState | None]
    ) -> Decision | None:
        """The core's answer on the aliases as just written, when it needs no AWS call; else None.

        Only after routine alias writes (a rollback's confirmation goes out as it is, first in the
        budget); the core confirms the pending write itself (``confirm_pending``, the step starting
        now) and goes on as the next tick would: entering a pause, recording a promotion.
        """
        decision = outcome.decision
        if not all(isinstance(action, UpdateAlias) and not action.rollback for action in decision.actions):
            return None
        main = aliases.get(spec.alias)
        observed = dataclasses.replace(
            outcome.observation.observed,
            alias_read=True,
            alias_exists=main is not None,
            alias=main.routing if main is not None else None,
            other_aliases={n: a.routing for n, a in aliases.items() if n != spec.alias and a is not None},
        )
        after = self._decide(spec, decision.record, Observation(observed, aliases))
        needs_aws = after.actions or after.read_alias or after.read_provisioned
        if needs_aws or after.record.pending is not None or after.status.phase is Phase.INVALID:
            return None
        return dataclasses.replace(after, events=(*decision.events, *after.events))

    async def _publish(self, spec: RolloutSpec, action: PublishVersion) -> None:
        self._gate()
        version = await self._aws.lambda_.publish_version(
            spec.function_name, code_sha256=action.code_sha256, description=action.description
        )
        self._observer.remember_published(spec, version)

    def _start_hook(self, spec: RolloutSpec, action: RunHook) -> None:
        """Start a lifecycle hook (a side effect like a write: leaders only); its answer comes later."""
        self._gate()
        if self._hooks is not None:
            self._hooks.start(spec.key, spec, action)

    async def _apply_setting(self, spec: RolloutSpec, action: SettingAction) -> None:
        """One declared-settings write; provisioned concurrency always on a version qualifier."""
        lam, function = self._aws.lambda_, spec.function_name
        self._gate()
        if isinstance(action, PutReservedConcurrency):
            await lam.put_reserved_concurrency(function, action.value)
        elif isinstance(action, PutProvisionedConcurrency):
            await lam.put_provisioned(function, action.qualifier, action.value)
        elif isinstance(action, DeleteProvisionedConcurrency):
            await lam.delete_provisioned(function, action.qualifier)
        else:
            await lam.put_event_invoke_config(function, action.qualifier, action.config)

    async def _write_alias(
        self, spec: RolloutSpec, action: UpdateAlias, aliases: Mapping[str, AliasState | None]
    ) -> AliasState:
        """Create or update one alias, always with the RevisionId read this tick (never a stale one)."""
        name = action.write.alias
        if name in aliases:
            state = aliases[name]
        else:
            state = await self._aws.lambda_.get_alias(spec.function_name, name, priority=action.rollback)
        self._gate()
        if state is None:
            return await self._aws.lambda_.create_alias(
                spec.function_name, name, action.write.routing, priority=action.rollback
            )
        return await self._aws.lambda_.update_alias(
            spec.function_name,
            name,
            action.write.routing,
            revision_id=state.revision_id,
            priority=action.rollback,
        )

    # ---- 4. record -----------------------------------------------------------------------------

    async def _persist(self, spec: RolloutSpec, fn: FunctionTags, record: Record, *, priority: bool = False) -> None:
        self._gate()
        await self._store.persist(fn, alias=spec.alias, key=spec.key, record=record, priority=priority)

    async def _clear_handled_request(
        self, spec: RolloutSpec, record: Record, outcome: ReconcileResult, *, priority: bool
    ) -> None:
        """A request leaves the inbox only after the record saying it was handled is durable: never lost."""
        request = outcome.observation.observed.request
        if request is not None and record.last_request == request.id and self._inbox is not None:
            self._gate()
            await self._inbox.handled(spec, request, priority=priority)
