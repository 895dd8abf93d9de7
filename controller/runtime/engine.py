"""The asyncio engine: which rollouts to reconcile when, with what shared reads, and how to stop.

A tick starts a reconcile for every rollout that is not backing off and not already being
reconciled, each in its own task, and does not wait for them: a rollout whose reconcile is slow (an
``UpdateAlias`` stuck in botocore's adaptive retries for seconds) holds up no other rollout and no
later tick; it is simply skipped by the ticks that come while it is in flight, so a rollout is never
handled by two tasks at once. The reads shared by all rollouts are made once per tick, before the
tasks start: the alarms in ALARM (one paginated ``DescribeAlarms``), the control requests (one
``GetResources`` per distinct alias name), and every metric-analysis measurement due for any rollout
(one batched ``GetMetricData``, ``controller.analysis.metrics``; a failed call measures nothing and
the steps stay held). An idle rollout then costs no AWS call at all; its alias is re-read only on a
slow drift check, spread over time and capped per tick. A rollout whose last answer changed nothing
is not even reconciled while none of that answer's inputs changed and the core's requeue instant has
not come (``controller.runtime.quiet``; a rollout measured this tick is always reconciled): at a
thousand waiting rollouts a quiet tick is the shared reads and a few comparisons each. ``tick``
(``--once``, tests, the benchmark) also waits for the reconciles it started; the daemon loop uses
``step``.

Scheduling: ticks every ``interval`` seconds, earlier when the core asked to be woken
(``requeue_after``, e.g. the end of a pause) or the source changed. A rollout that fails (AWS error,
throttling, corrupt record) backs off alone, exponentially with jitter; one whose input is bad
(``Invalid``) is retried slowly, because publishing the missing version fixes it without any change
to its document. A finished reconcile whose rollout wants to be looked at before the next
regular tick (the end of a pause) moves that tick earlier.

``run`` stops on ``stop``: no reconcile starts after it, those in flight get ``shutdown_grace`` to
finish their writes, then the rest are cancelled. Cancelling is safe at any instant because every
alias write is written ahead (see ``controller.runtime.reconcile``).

The clock is injected: ``now`` given to the core comes from it, so tests drive ticks with a fake
clock and never sleep.

Seams for the daemons around it: ``inbox`` is where control requests wait (a tag on the function in
GitOps mode, an annotation on the resource in Kubernetes mode: ``controller.runtime.inbox``),
``wake`` starts a tick now, and ``can_write`` gates every AWS write (leadership). Everything the
engine sees goes to ``StatusSink`` outputs; an ``Event`` identical to the last one passed on for the
rollout (an Invalid rollout repeats its event on every decide) is dropped unless the decision changed
the durable record, so Events, logs and metrics are not spammed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from controller.analysis.hooks import HookRunner
from controller.analysis.metrics import measure_due
from controller.aws import AwsClients
from controller.aws.errors import NotFound
from controller.core.codec import CodecError
from controller.core.decide import orphan
from controller.core.reasons import Reason
from controller.core.status import record_status
from controller.core.types import (
    Decision,
    Event,
    Measurement,
    Phase,
    Record,
    Status,
    UpdateAlias,
    blank_status,
    invalid_status,
)
from controller.document.model import RolloutSpec
from controller.document.names import function_name_of
from controller.document.ownership import OwnershipPolicy
from controller.observability.logs import RolloutLogger, rollout_logger
from controller.runtime.backoff import backoff_delay
from controller.runtime.desired import DesiredState
from controller.runtime.inbox import Inbox, TagInbox
from controller.runtime.observe import Observer, TickReads
from controller.runtime.quiet import Quiet, remember, still_quiet
from controller.runtime.reconcile import Clock, Outcome, Reconciler, WritesStopped
from controller.runtime.records import FunctionTags, RecordStore, managed_entries
from controller.runtime.sink import ALARM, MISSING, OK, AliasWritten, FanoutSink, Reconciled, StatusSink

logger = logging.getLogger("controller.engine")


@dataclass(frozen=True)
class EngineSettings:
    interval: float = 5.0
    # Every rollout's alias is re-read this often to notice hand-made changes (drift)...
    drift_interval: float = 600.0
    # ... but never more than this fraction of all rollouts in one tick, so the cost stays flat.
    drift_fraction: float = 0.01
    backoff_cap: float = 300.0
    # Bad input is retried no slower than this: the fix may be in AWS, not in the document.
    invalid_retry_cap: float = 60.0
    # Scales every duration of the plans (tests run presets' minutes in seconds).
    time_scale: float = 1.0
    # On stop, reconciles in flight get this long to finish their writes before they are cancelled:
    # with the process's own exit it stays within the 10 s SIGTERM promise.
    shutdown_grace: float = 8.0
    # A rollout whose last answer changed nothing is not reconciled again until an input changes or
    # the core's requeue instant; one with a countdown in its status is refreshed at least this often.
    quiet_refresh: float = 30.0
    # Which functions each namespace's rollouts may move (``--ownership-config``); None: no config.
    ownership: OwnershipPolicy | None = None
    # How long a tick waits for the metric measurements it asked for (one GetMetricData for all): a
    # slow answer is taken by a later tick instead, so it never holds back the alarms of the others.
    measure_wait: float = 1.0


@dataclass
class Rollout:
    """The engine's bookkeeping for one rollout; the durable state is on the function, not here."""

    spec: RolloutSpec
    log: RolloutLogger
    held: tuple[str, ...] = ()
    status: Status | None = None
    failures: int = 0
    retry_at: float = 0.0
    wake_at: float | None = None
    # None until the aliases were read once (start-up); then when the next drift check is due.
    drift_at: float | None = None
    last_decision: Decision | None = field(default=None, repr=False)
    # When a tick's read first saw one of the watched alarms in ALARM (None while none is), and
    # whether the write restoring stable after it was already reported (once per firing).
    alarm_seen_at: float | None = None
    reaction_reported: bool = False
    # The last event passed on to the sinks (repeats of it are dropped).
    last_event: Event | None = None
    # The last answer that changed nothing, with its inputs: while they hold, no reconcile is needed.
    quiet: Quiet | None = field(default=None, repr=False)
    # The reconcile in flight was started to roll back now: it is never overtaken by another.
    urgent: bool = False


@dataclass
class Orphan:
    """A rollout whose document went away while its new version had traffic: loud until it is back.

    ``persisted`` is False until the record saying Orphaned is on the function (a tag write that
    is retried every tick, like any other write).
    """

    spec: RolloutSpec
    record: Record
    persisted: bool = False


class Engine:
    """Reconciles a changing set of rollouts against AWS until told to stop."""

    def __init__(
        self,
        aws: AwsClients,
        *,
        settings: EngineSettings | None = None,
        clock: Clock = time.time,
        sinks: tuple[StatusSink, ...] = (),
        rand: Callable[[], float] = random.random,
        can_write: Callable[[], bool] = lambda: True,
        inbox: Inbox | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self._aws = aws
        self._clock = clock
        self._rand = rand
        self._store = RecordStore(aws)
        self._observer = Observer(aws)
        self._can_write = can_write
        self.inbox: Inbox = inbox if inbox is not None else TagInbox(self._store)
        self._hooks = HookRunner(lambda_=aws.lambda_, clock=clock, on_answer=self._hook_answered)
        self._reconciler = Reconciler(
            aws=aws,
            store=self._store,
            observer=self._observer,
            clock=clock,
            time_scale=self.settings.time_scale,
            can_write=can_write,
            on_alias_written=self._alias_written,
            ownership=self.settings.ownership,
            owner_max_age=self.settings.drift_interval,
            hooks=self._hooks,
            inbox=self.inbox,
        )
        self.sink = FanoutSink(sinks)
        self._rollouts: dict[str, Rollout] = {}
        # Rollouts whose document is gone while they were mid-rollout (``Orphan``), by key.
        self._orphans: dict[str, Orphan] = {}
        # The metric measurements asked for and not answered yet (at most one batch in flight).
        self._measuring: asyncio.Task[dict[str, dict[str, Measurement]]] | None = None
        self._started = False
        self._stopping = False
        # The reconcile task of each rollout being reconciled right now (at most one per rollout).
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # ``_wake`` interrupts the loop's sleep: a tick starts at once when ``_tick_requested``,
        # otherwise the sleep is planned again (a finished reconcile wants an earlier look).
        self._wake = asyncio.Event()
        self._tick_requested = False
        self._next_tick_at = math.inf
        self.ticks = 0
        # Called after every tick (liveness heartbeats); must be quick and never raise.
        self.tick_listeners: list[Callable[[], None]] = []

    # ---- the set of rollouts -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once start-up read the records and one tick completed (``/readyz``)."""
        return self._started and self.ticks > 0

    def rollouts(self) -> dict[str, Rollout]:
        return dict(self._rollouts)

    def status(self, key: str) -> Status | None:
        rollout = self._rollouts.get(key)
        if rollout is not None:
            return rollout.status
        orphaned = self._orphans.get(key)
        return record_status(orphaned.record) if orphaned is not None else None

    def orphans(self) -> dict[str, Orphan]:
        """Rollouts no longer managed that were left mid-rollout, by key."""
        return dict(self._orphans)

    # ---- seams for the daemons -----------------------------------------------------------------

    def wake(self) -> None:
        """Start the next tick now rather than at the end of the interval."""
        self._tick_requested = True
        self._wake.set()

    def in_flight(self) -> frozenset[str]:
        """Keys of the rollouts whose reconcile is running right now."""
        return frozenset(self._inflight)

    async def apply(self, desired: DesiredState) -> None:
        """Adopt a source's view: new and changed rollouts run at the next tick, removed ones stop."""
        for key, spec in desired.rollouts.items():
            rollout = self._rollouts.get(key)
            if rollout is None:
                if self._orphans.pop(key, None) is not None:
                    logger.warning("%s: document found again; the rollout is managed again", key)
                rollout = self._rollouts[key] = Rollout(spec=spec, log=rollout_logger(logger, spec))
            elif rollout.spec != spec:
                rollout.spec, rollout.log = spec, rollout_logger(logger, spec)
                rollout.failures, rollout.retry_at = 0, 0.0
            await self._hold(rollout, desired.held.get(key, ()))
        for key in [k for k in self._rollouts if k not in desired.rollouts]:
            # Management stops; the alias stays as it is, and a rollout left mid-way says so.
            gone = self._rollouts.pop(key)
            self._observer.forget_rollout(key)
            self._hooks.forget(key)
            if not await self._orphan(gone):
                await self.sink.removed(spec=gone.spec)
        for file, errors in desired.orphan_errors.items():
            logger.warning("%s: not loaded: %s", file, "; ".join(errors))
        self.wake()

    async def _orphan(self, gone: Rollout) -> bool:
        """``gone`` left mid-rollout: keep it visible as Orphaned (True), or let it go quietly (False)."""
        spec = gone.spec
        fn = self._store.known(spec.function_name)
        try:
            record = self._store.record(fn, spec.alias) if fn is not None else None
        except CodecError:
            record = None
        marked = orphan(record, alias=spec.alias, why="its document is gone") if record is not None else None
        if marked is None:
            return False
        self._orphans[spec.key] = Orphan(spec=spec, record=marked, persisted=marked == record)
        gone.log.warning("%s", marked.message)
        await self.sink.status_changed(spec=spec, status=record_status(marked), previous=gone.status)
        await self.sink.event(spec=spec, event=Event(Reason.DOCUMENT_REMOVED, marked.message, warning=True))
        return True

    async def _persist_orphans(self) -> None:
        """Write the Orphaned records not written yet (leaders only); a failure is retried next tick."""
        for key, orphaned in list(self._orphans.items()):
            fn = self._store.known(orphaned.spec.function_name)
            if orphaned.persisted or fn is None or not self._can_write() or self._orphans.get(key) is not orphaned:
                continue  # written, unknown, not ours to write, or its document came back meanwhile
            try:
                await self._store.persist(fn, alias=orphaned.spec.alias, key=key, record=orphaned.record)
            except Exception as exc:
                logger.warning("%s: could not record that it is orphaned (retried next tick): %s", key, exc)
                continue
            orphaned.persisted = True

    def _adopt_orphans(self) -> None:
        """At start-up: records that say Orphaned and whose document is not (yet) here stay visible."""
        for fn in self._store.managed().values():
            for alias, key in managed_entries(fn.tags).items():
                if key in self._rollouts or key in self._orphans:
                    continue
                found = _decoded(self._store, fn, alias)
                if found is not None and found.phase is Phase.ORPHANED:
                    spec = RolloutSpec.placeholder(key, function_name=function_name_of(fn.arn), alias=alias)
                    self._orphans[key] = Orphan(spec=spec, record=found, persisted=True)

    async def _hold(self, rollout: Rollout, errors: tuple[str, ...]) -> None:
        if errors == rollout.held:
            return
        rollout.held = errors
        if errors:
            rollout.failures, rollout.retry_at = 0, 0.0
            previous = rollout.status or self._recorded_status(rollout.spec)
            await self._report(rollout, invalid_status(errors, previous=previous), ())

    def _recorded_status(self, spec: RolloutSpec) -> Status | None:
        """The status the rollout's durable record shows, from the cached tags (no AWS call)."""
        # By key alone: a broken document may name another function or alias than its record is for.
        for fn in self._store.managed().values():
            for alias, key in managed_entries(fn.tags).items():
                if key == spec.key:
                    record = _decoded(self._store, fn, alias)
                    return record_status(record) if record is not None else None
        return None

    # ---- start-up and ticks --------------------------------------------------------------------

    async def start(self) -> None:
        """Read every managed function's record with one scan; others are read when first needed."""
        await self._store.scan_managed()
        self._adopt_orphans()
        for orphaned in self._orphans.values():
            await self.sink.status_changed(spec=orphaned.spec, status=record_status(orphaned.record), previous=None)
        for rollout in self._rollouts.values():
            recorded = self._recorded_status(rollout.spec) if rollout.held else None
            if recorded is not None:
                # Held before the records were read: show where the record says it stands.
                await self._report(rollout, invalid_status(rollout.held, previous=recorded), ())
        self._started = True

    async def tick(self) -> None:
        """One pass that also waits for what it started: the reconciles, the metric measurements and the
        lifecycle hooks (``--once``, tests, the benchmark); their answers are taken by the next pass."""
        started = await self.step(wait=True)
        if started:
            await asyncio.wait(started)
        hooks = self._hooks.tasks()
        if hooks:
            await asyncio.wait(hooks)

    async def step(self, *, wait: bool = False) -> list[asyncio.Task[None]]:
        """Start a reconcile for every due rollout not already in flight, after the shared reads.

        Returns the tasks it started without waiting for them: the daemon loop moves on. A rollout
        that is not due (its reconcile is still in flight, or it backs off after a failure) is
        reconciled anyway when the core would roll it back on what this tick read (``_urgent``).
        ``wait``: wait for the metric measurements however long they take (``tick``).
        """
        if not self._started:
            await self.start()
        now = self._clock()
        looked_at = [r for r in self._rollouts.values() if not r.held]
        started: list[asyncio.Task[None]] = []
        if looked_at and not self._stopping:
            due = [r for r in looked_at if self._due(r, now)]
            reads = await self._tick_reads(looked_at, due, wait=wait)
            forced = self._alias_reads_due(due, now)
            # The source may have changed, or stop come, while the shared reads were made.
            for rollout in (r for r in looked_at if self._managed(r) and not self._stopping):
                _track_alarm(rollout, reads, seen_at=now)
                if self._due(rollout, now):
                    if rollout.spec.key not in forced and self._still_quiet(rollout, reads, now):
                        continue
                    started.append(self._launch(rollout, reads, force=rollout.spec.key in forced))
                elif self._urgent(rollout, reads, now):
                    started.append(await self._overtake(rollout, reads))
        await self._persist_orphans()
        self.ticks += 1
        for listener in self.tick_listeners:
            listener()
        return started

    def _managed(self, rollout: Rollout) -> bool:
        return self._rollouts.get(rollout.spec.key) is rollout

    def _due(self, rollout: Rollout, now: float) -> bool:
        key = rollout.spec.key
        return self._managed(rollout) and not rollout.held and rollout.retry_at <= now and key not in self._inflight

    def _urgent(self, rollout: Rollout, reads: TickReads, now: float) -> bool:
        """A rollout the tick would not reconcile, but which the core rolls back on this tick's reads.

        A reconcile slow in an AWS call (throttled, retried, a slow network), or a rollout backing off
        after failures, must not delay its rollback: it is reconciled now, ahead of the backoff, and
        a reconcile in flight is overtaken (cancelled, which the write-ahead record makes safe at any
        instant). A reconcile started for that reason is never overtaken itself.
        """
        inflight = rollout.spec.key in self._inflight
        if rollout.held or (inflight and rollout.urgent):
            return False
        return self._reconciler.would_roll_back(rollout.spec, reads, now)

    async def _overtake(self, rollout: Rollout, reads: TickReads) -> asyncio.Task[None]:
        key = rollout.spec.key
        running = self._inflight.get(key)
        if running is not None:
            rollout.log.warning("rolling back now: the reconcile in flight is cancelled (it waits on AWS)")
            running.cancel()
            await asyncio.wait({running})
        else:
            rollout.log.warning("rolling back now, ahead of the retry backoff (%d failures)", rollout.failures)
        return self._launch(rollout, reads, force=True, urgent=True)

    def _launch(self, rollout: Rollout, reads: TickReads, *, force: bool, urgent: bool = False) -> asyncio.Task[None]:
        key = rollout.spec.key
        rollout.urgent = urgent
        task = asyncio.create_task(self._reconcile_one(rollout, reads, force=force), name=f"reconcile {key}")
        self._inflight[key] = task
        task.add_done_callback(functools.partial(self._landed, key))
        return task

    def _landed(self, key: str, task: asyncio.Task[None]) -> None:
        """A reconcile ended: free its rollout for the next tick, which may now be due earlier."""
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("reconcile of %s crashed", key, exc_info=exc)
        rollout = self._rollouts.get(key)
        look = self._next_look(rollout, self._clock()) if rollout is not None else None
        if look is not None and look < self._next_tick_at:
            self._wake.set()

    def _next_look(self, rollout: Rollout, now: float) -> float | None:
        """When the rollout wants a tick before the regular one (None: the regular one will do)."""
        if rollout.held or rollout.spec.key in self._inflight:
            return None
        if rollout.retry_at > now:
            return rollout.retry_at
        return rollout.wake_at

    async def _tick_reads(self, looked_at: list[Rollout], due: list[Rollout], *, wait: bool) -> TickReads:
        """The reads shared by every rollout of the tick: alarms, control requests, measurements."""
        watched = any(r.spec.analysis.alarms for r in looked_at)
        alarms = await self._aws.cloudwatch.alarms_in_alarm() if watched else frozenset()
        await self._observer.check_alarms(r.spec for r in due)
        return TickReads(
            alarms_in_alarm=alarms,
            requests=await self.inbox.pending([r.spec for r in looked_at]),
            measurements=await self._measurements(due, wait=wait),
        )

    async def _measurements(self, due: list[Rollout], *, wait: bool) -> dict[str, dict[str, Measurement]]:
        """Metric analysis: every measurement due, for all rollouts, in one batched GetMetricData.

        At most one batch is in flight. A tick waits ``measure_wait`` seconds for it; a slower answer
        is taken by a later tick (the measurements keep their own time and window), so a slow
        CloudWatch holds back no alarm and no other rollout.
        """
        if self._measuring is None:
            self._measuring = asyncio.create_task(
                measure_due(
                    self._aws.cloudwatch,
                    self._store,
                    [r.spec for r in due],
                    now=self._clock(),
                    time_scale=self.settings.time_scale,
                ),
                name="measure",
            )
        done, _ = await asyncio.wait({self._measuring}, timeout=None if wait else self.settings.measure_wait)
        if not done:
            return {}
        task, self._measuring = self._measuring, None
        return task.result()

    def _alias_reads_due(self, due: list[Rollout], now: float) -> set[str]:
        """Rollouts whose aliases are read this tick: all at start-up, drift checks up to the cap."""
        forced = {r.spec.key for r in due if r.drift_at is None}
        cap = max(1, math.ceil(len(self._rollouts) * self.settings.drift_fraction))
        drifting = sorted((r for r in due if r.drift_at is not None and r.drift_at <= now), key=_drift_due)
        forced.update(r.spec.key for r in drifting[:cap])
        return forced

    def _still_quiet(self, rollout: Rollout, reads: TickReads, now: float) -> bool:
        """The rollout's last answer changed nothing and none of its inputs changed since (``quiet``)."""
        spec = rollout.spec
        fn = self._store.known(spec.function_name)
        if self._hooks.answers(spec.key):
            return False  # a hook answered: the core has not seen it yet
        return still_quiet(
            rollout.quiet,
            spec=spec,
            tags=fn.tags if fn is not None else None,
            now=now,
            requested=spec.key in reads.requests,
            measured=spec.key in reads.measurements,
            firing=reads.alarms_in_alarm,
            observer_settled=self._observer.alarms_settled(spec) and not self._observer.settings_due(spec),
            time_scale=self.settings.time_scale,
        )

    async def _reconcile_one(self, rollout: Rollout, reads: TickReads, *, force: bool) -> None:
        # The inputs as they were before anything was read: a change while it runs voids the skip.
        rollout.quiet = None
        began, fn = self._clock(), self._store.known(rollout.spec.function_name)
        tags = dict(fn.tags) if fn is not None else None
        started = time.perf_counter()
        try:
            outcome = await self._reconciler.reconcile(rollout.spec, reads, read_aliases=force)
        except asyncio.CancelledError:
            raise
        except WritesStopped:
            # Not a failure: leadership went. Whatever was half-done is in the write-ahead record.
            rollout.drift_at = self._clock()
            rollout.log.info("write gate closed: reconcile stopped before its next AWS write")
            return
        except Exception as exc:
            if self._rollouts.get(rollout.spec.key) is not rollout:
                return  # no longer managed: its series are gone and must not come back
            seconds = time.perf_counter() - started
            await self.sink.reconciled(spec=rollout.spec, report=Reconciled(seconds, error=type(exc).__name__))
            await self._failed(rollout, exc)
            return
        if self._rollouts.get(rollout.spec.key) is not rollout:
            return
        states = _alarm_states(rollout.spec, reads, missing=outcome.observation.observed.missing_alarms)
        report = Reconciled(time.perf_counter() - started, alarm_states=states)
        await self.sink.reconciled(spec=rollout.spec, report=report)
        await self._succeeded(rollout, outcome)
        refresh = self.settings.quiet_refresh
        rollout.quiet = remember(outcome.decision, spec=rollout.spec, tags=tags, started=began, refresh=refresh)

    def _hook_answered(self, key: str) -> None:
        """A lifecycle hook answered: look at its rollout now, not at the next regular tick."""
        rollout = self._rollouts.get(key)
        if rollout is not None:
            rollout.quiet = None
            self.wake()

    async def _alias_written(self, spec: RolloutSpec, action: UpdateAlias) -> None:
        """Report an alias write; the one restoring stable after an alarm carries the reaction time."""
        rollout = self._rollouts.get(spec.key)
        reaction = None
        restores = action.rollback and action.write.alias == spec.alias
        if restores and rollout is not None and rollout.alarm_seen_at is not None and not rollout.reaction_reported:
            reaction = max(0.0, self._clock() - rollout.alarm_seen_at)
            rollout.reaction_reported = True
        write = AliasWritten(alias=action.write.alias, rollback=action.rollback, reaction_seconds=reaction)
        await self.sink.alias_written(spec=spec, write=write)

    async def _succeeded(self, rollout: Rollout, outcome: Outcome) -> None:
        now = self._clock()
        decision = outcome.decision
        rollout.last_decision = decision
        if outcome.aliases_read:
            rollout.drift_at = now + self._drift_delay(rollout)
        if decision.status.phase is Phase.INVALID:
            # Bad input: retried slowly (a version may get published), nothing was written.
            rollout.failures += 1
            rollout.retry_at = now + backoff_delay(
                rollout.failures, base=self.settings.interval, cap=self.settings.invalid_retry_cap, rand=self._rand
            )
        else:
            rollout.failures, rollout.retry_at = 0, 0.0
        rollout.wake_at = now + decision.requeue_after if decision.requeue_after is not None else None
        await self._report(rollout, decision.status, decision.events, record_changed=decision.record_changed)

    async def _failed(self, rollout: Rollout, exc: Exception) -> None:
        now = self._clock()
        rollout.failures += 1
        delay = backoff_delay(
            rollout.failures, base=self.settings.interval, cap=self.settings.backoff_cap, rand=self._rand
        )
        rollout.retry_at = now + delay
        rollout.wake_at = None  # the retry time says when to look again
        if isinstance(exc, NotFound):
            # The function may have been deleted or re-created: read it afresh next time.
            self._store.forget(rollout.spec.function_name)
        # Whatever failed may have left the alias moved: read it before deciding again.
        rollout.drift_at = now
        rollout.log.warning("reconcile failed (attempt %d, retry in %.1fs): %s", rollout.failures, delay, exc)
        status = dataclasses.replace(rollout.status or blank_status(), errors=(f"{type(exc).__name__}: {exc}",))
        await self._report(rollout, status, ())

    def _drift_delay(self, rollout: Rollout) -> float:
        """The first drift check lands anywhere in the interval, so checks spread out over ticks."""
        interval = self.settings.drift_interval
        if rollout.drift_at is None:
            return interval * (0.5 + 0.5 * _drift_order(rollout) / 0xFFFFFFFF)
        return interval

    async def _report(
        self, rollout: Rollout, status: Status, events: tuple[Event, ...], *, record_changed: bool = False
    ) -> None:
        if status != rollout.status:
            previous, rollout.status = rollout.status, status
            await self.sink.status_changed(spec=rollout.spec, status=status, previous=previous)
        for event in events:
            if not record_changed and _same_event(event, rollout.last_event):
                continue  # the core repeats itself on an unchanged record (Invalid): said once is enough
            rollout.last_event = event
            await self.sink.event(spec=rollout.spec, event=event)

    # ---- the daemon loop -----------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event, updates: AsyncIterator[DesiredState] | None = None) -> None:
        """Tick until ``stop`` is set; then reconciles in flight get ``shutdown_grace`` to finish.

        Those still running after it, and all of them when ``run`` itself is cancelled (leadership
        lost), are cancelled before it returns: nothing of this engine outlives it.
        """
        follower = asyncio.create_task(self._follow(updates)) if updates is not None else None
        stopper = asyncio.create_task(self._stop_when(stop))
        try:
            while not stop.is_set():
                await self._guarded_step()
                await self._sleep_until_due(stop)
            await self._drain(self.settings.shutdown_grace)
        finally:
            stopper.cancel()
            if follower is not None:
                follower.cancel()
            await self._cancel_in_flight()
            await self._hooks.close()
            if self._measuring is not None:
                self._measuring.cancel()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        # Reconciles already running may finish; none start after this.
        self._stopping = True
        self.wake()

    async def _drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the reconciles in flight to finish their writes."""
        if self._inflight:
            logger.info("waiting up to %.1fs for %d reconcile(s) in flight", grace, len(self._inflight))
            await asyncio.wait(set(self._inflight.values()), timeout=grace)

    async def _cancel_in_flight(self) -> None:
        # Safe at any instant: a cancelled reconcile leaves AWS either before its next write or with
        # that write named in the write-ahead record, which the next controller completes.
        tasks = list(self._inflight.values())
        if tasks:
            logger.warning("cancelling %d reconcile(s) still in flight", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, updates: AsyncIterator[DesiredState]) -> None:
        async for desired in updates:
            await self.apply(desired)

    async def _guarded_step(self) -> None:
        try:
            await self.step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Shared reads failed (e.g. CloudWatch down): nothing was decided; try again next tick.
            # One line saying why; the traceback only for whoever debugs.
            logger.error("tick failed, retried next tick: %s: %s", type(exc).__name__, exc)
            logger.debug("tick failure", exc_info=exc)

    async def _sleep_until_due(self, stop: asyncio.Event) -> None:
        """Sleep until the regular tick or a rollout's earlier look; ``wake`` cuts it short.

        The regular tick's time is fixed when the sleep starts, so reconciles finishing meanwhile
        can only move it earlier, never push it back.
        """
        regular = self._clock() + self.settings.interval
        while not stop.is_set() and not self._tick_requested:
            now = self._clock()
            looks = (self._next_look(r, now) for r in self._rollouts.values())
            due = min([regular, *(look for look in looks if look is not None)])
            # A floor keeps a core that asks for "now" again and again from spinning the CPU.
            delay = max(due - now, min(0.05, self.settings.interval))
            self._next_tick_at = now + delay
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                break
        self._tick_requested = False
        self._next_tick_at = math.inf


def _decoded(store: RecordStore, fn: FunctionTags, alias: str) -> Record | None:
    try:
        return store.record(fn, alias)
    except CodecError:
        return None


def _same_event(event: Event, last: Event | None) -> bool:
    return last is not None and (event.reason, event.message) == (last.reason, last.message)


def _alarm_states(spec: RolloutSpec, reads: TickReads, *, missing: frozenset[str]) -> dict[str, str]:
    """Watched alarm -> ALARM / OK / MISSING: only alarms in ALARM are read, so OK means "not in ALARM"."""
    return {a: ALARM if a in reads.alarms_in_alarm else MISSING if a in missing else OK for a in spec.analysis.alarms}


def _track_alarm(rollout: Rollout, reads: TickReads, *, seen_at: float) -> None:
    """Remember when this tick's read first saw a watched alarm in ALARM; forget when none is."""
    if any(name in reads.alarms_in_alarm for name in rollout.spec.analysis.alarms):
        if rollout.alarm_seen_at is None:
            rollout.alarm_seen_at, rollout.reaction_reported = seen_at, False
    else:
        rollout.alarm_seen_at = None


def _drift_due(rollout: Rollout) -> float:
    return rollout.drift_at or 0.0


def _drift_order(rollout: Rollout) -> int:
    """A stable per-rollout number that spreads drift checks evenly (not Python's salted hash)."""
    return zlib.crc32(rollout.spec.key.encode())
