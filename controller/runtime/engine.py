"""The asyncio engine: reconciles a changing set of rollouts against AWS until told to stop.

It is composed of small parts, each with its own module:

- the **scheduler** (``controller.runtime.scheduler``): which rollouts a tick reconciles (not held,
  not backing off, not already in flight), when the next tick comes, drift checks spread over time,
  backoff, the reconciles in flight;
- the **tick reader** (``controller.runtime.reads``): the reads shared by every rollout of a tick,
  made once: the request inbox and the analysis (every provider asked once: one ``DescribeAlarms``,
  one batched ``GetMetricData``, the hooks' answers); each rollout's ``Inputs`` come from them;
- the **reconciler** (``controller.runtime.reconcile``): observe, decide, act, record for one rollout;
- the **reporter** (``controller.runtime.reporter``): statuses, Events, reports and alias writes to
  the sinks, each said once, and the rollback reaction time;
- the **quiet skip** (``controller.runtime.quiet``): a rollout whose last answer changed nothing is
  not reconciled while its ``Inputs`` are equal and nothing of its own is due;
- **orphans** (``controller.runtime.orphans``): rollouts whose document went away mid-rollout.

A tick starts a reconcile for every due rollout, each in its own task, and does not wait for them:
a reconcile slow in an AWS call holds up no other rollout and no later tick. The API budget serves
the reconciles in the order they were launched (``controller.aws.budget.serve_in_order``): each
rollout goes read -> decide -> write on its own, so of a thousand new rollouts the first has its
weight within a second and the others follow at the budget's rate, instead of all of them waiting
for everyone's reads. A rollout that is not
due (its reconcile still in flight, or backing off after failures) is reconciled anyway when the core
would roll it back on the tick's reads (``urgent``): its slow reconcile is overtaken (cancelled,
safe at any instant: the write-ahead record), so nothing a rollout waits for delays its rollback.
An idle rollout costs no AWS call at all. ``tick`` (``--once``, tests, the benchmark) also waits for
what it started; the daemon loop uses ``step``.

``run`` stops on ``stop``: no reconcile starts after it, those in flight get ``shutdown_grace`` to
finish their writes, then the rest are cancelled. The clock is injected: ``now`` given to the core
comes from it, so tests drive ticks with a fake clock and never sleep.

Seams for the daemons around it: ``inbox`` is where control requests wait (a tag on the function in
GitOps mode, an annotation on the resource in Kubernetes mode: ``controller.runtime.inbox``),
``analysis`` the providers asked every tick (``controller.analysis``), ``wake`` starts a tick now,
``alarm_changed`` takes a pushed alarm state change (``--alarm-events``: it starts a tick when it
tells something about ALARM to a rollout in flight), ``companions`` run exactly as long as ``run``
does (the alarm-events consumer of a leadership term), and ``can_write`` gates every AWS write
(leadership).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from controller.analysis import NO_EVIDENCE, Analysis, Provider
from controller.analysis.alarm_events import AlarmChange
from controller.analysis.alarms import AlarmsProvider
from controller.analysis.hooks import HookRunner
from controller.analysis.queries import MetricQueries
from controller.aws import AwsClients
from controller.aws.budget import serve_in_order
from controller.aws.errors import AwsError, NotFound
from controller.core.status import record_status
from controller.core.types import Decision, Phase, Status, UpdateAlias, blank_status, invalid_status
from controller.document.model import RolloutSpec
from controller.document.ownership_config import OwnershipPolicy
from controller.observability.logs import rollout_logger
from controller.runtime.announcing import Announcer
from controller.runtime.desired import DesiredState
from controller.runtime.inbox import Inbox, TagInbox
from controller.runtime.observe import Observer
from controller.runtime.orphans import Orphans, decoded
from controller.runtime.quiet import remember, still_quiet
from controller.runtime.reads import Inputs, TickReader, TickReads
from controller.runtime.reconcile import Clock, Reconciler, ReconcileResult, WritesStopped, is_rollback
from controller.runtime.records import RecordStore, managed_entries
from controller.runtime.reporter import Reporter
from controller.runtime.rollouts import Orphan, Rollout
from controller.runtime.scheduler import Scheduler
from controller.runtime.sink import AnnouncingSink, StatusSink

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
    # with the process's own exit it stays within the 10 s SIGTERM promise. Both daemons use it.
    shutdown_grace: float = 8.0
    # A rollout whose last answer changed nothing is not reconciled again until an input changes or
    # the core's requeue instant; one with a countdown in its status is refreshed at least this often.
    quiet_refresh: float = 30.0
    # Which functions each namespace's rollouts may move (``--ownership-config``); None: no config.
    ownership: OwnershipPolicy | None = None
    # How long a tick waits for the metric measurements it asked for (one GetMetricData for all): a
    # slow answer is taken by a later tick instead, so it never holds back the alarms of the others.
    measure_wait: float = 1.0


class Engine:
    """Reconciles a changing set of rollouts against AWS until told to stop (see the module docstring)."""

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
        providers: Sequence[Provider] = (),
        announcer: Announcer | None = None,
    ) -> None:
        self.settings = settings = settings or EngineSettings()
        self._clock = clock
        self._store = RecordStore(aws)
        self._observer = Observer(aws)
        self.inbox: Inbox = inbox if inbox is not None else TagInbox(self._store)
        self._hooks = HookRunner(lambda_=aws.lambda_, clock=clock, on_answer=self._hook_answered)
        # The alarm history is read once per interval: a tick an event or a hook started early does not.
        self._alarms = AlarmsProvider(aws.cloudwatch, history_every=settings.interval)
        self._metrics = MetricQueries(aws.cloudwatch, time_scale=settings.time_scale, wait=settings.measure_wait)
        self.analysis = Analysis((self._alarms, self._metrics, self._hooks, *providers))
        self._announcer = announcer
        self._reads = TickReader(store=self._store, inbox=self.inbox, analysis=self.analysis, announcer=announcer)
        if announcer is not None:
            sinks = (*sinks, AnnouncingSink(announcer))
        self._reporter = Reporter(sinks, clock=clock)
        self.sink = self._reporter.sink
        self._scheduler = Scheduler(
            interval=settings.interval,
            drift_interval=settings.drift_interval,
            drift_fraction=settings.drift_fraction,
            backoff_cap=settings.backoff_cap,
            invalid_retry_cap=settings.invalid_retry_cap,
            clock=clock,
            rand=rand,
        )
        self._reconciler = Reconciler(
            aws=aws,
            store=self._store,
            observer=self._observer,
            clock=clock,
            time_scale=settings.time_scale,
            can_write=can_write,
            on_alias_written=self._alias_written,
            ownership=settings.ownership,
            owner_max_age=settings.drift_interval,
            hooks=self._hooks,
            inbox=self.inbox,
            on_decided=self._decided,
        )
        self._orphans = Orphans(self._store, self._reporter, can_write=can_write)
        self._rollouts: dict[str, Rollout] = {}
        # Each reconcile's place in the API budget's queues: launched first, served first.
        self._launches = itertools.count(1)
        self._started = False
        self._stopping = False
        self.ticks = 0
        # Called after every tick (liveness heartbeats); must be quick and never raise.
        self.tick_listeners: list[Callable[[], None]] = []
        # Run beside ``run`` while it runs: each is handed an event set when ``run`` ends, then cancelled
        # if it has not returned (the alarm-events consumer: only an engine that reconciles consumes).
        self.companions: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []

    # ---- the set of rollouts -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once start-up read the records and one tick completed (``/readyz``)."""
        return self._started and self.ticks > 0

    def rollouts(self) -> dict[str, Rollout]:
        return dict(self._rollouts)

    def status(self, key: str) -> Status | None:
        rollout = self._rollouts.get(key)
        return rollout.status if rollout is not None else self._orphans.status(key)

    def orphans(self) -> dict[str, Orphan]:
        """Rollouts no longer managed that were left mid-rollout, by key."""
        return self._orphans.all()

    def in_flight(self) -> frozenset[str]:
        """Keys of the rollouts whose reconcile is running right now."""
        return frozenset(self._scheduler.inflight)

    @property
    def alarms(self) -> AlarmsProvider:
        """The alarms provider (push mode sets its cross-check of the events against the polls)."""
        return self._alarms

    def wake(self) -> None:
        """Start the next tick now rather than at the end of the interval."""
        self._scheduler.wake()

    def alarm_changed(self, change: AlarmChange) -> None:
        """An alarm state change CloudWatch pushed (``--alarm-events``): the rollouts watching it look now.

        The alarms provider takes it as evidence (an ALARM counts until a poll has seen the alarm since;
        the instant counts for the attempts in flight whatever the alarm does next), and when it tells
        something new to a rollout with an attempt in flight the next tick starts at once: the rollback
        then takes the path a poll's would (the budget's rollback priority, the urgent overtake of a
        reconcile in flight). Rollouts with nothing in flight hear of it at the next regular tick: an
        alarm flapping on a healthy function costs no tick of its own.
        """
        if not self._alarms.pushed(change):
            return
        watching = [r for r in self._rollouts.values() if change.name in r.spec.analysis.alarms]
        in_flight = [r for r in watching if r.status is None or r.status.canary_version is not None]
        for rollout in in_flight:
            self._reporter.heard(rollout, at=change.received_at)
        if in_flight:
            self.wake()

    async def apply(self, desired: DesiredState) -> None:
        """Adopt a source's view: new and changed rollouts run at the next tick, removed ones stop."""
        for key, spec in desired.rollouts.items():
            rollout = self._rollouts.get(key)
            if rollout is None:
                self._orphans.back(key)
                rollout = self._rollouts[key] = Rollout(spec=spec, log=rollout_logger(logger, spec))
            elif rollout.spec != spec:
                rollout.spec, rollout.log = spec, rollout_logger(logger, spec)
                self._scheduler.reset(rollout)
            await self._hold(rollout, desired.held.get(key, ()))
        for key in [k for k in self._rollouts if k not in desired.rollouts]:
            # Management stops; the alias stays as it is, and a rollout left mid-way says so.
            gone = self._rollouts.pop(key)
            self._observer.forget_rollout(key)
            self._alarms.forget(key)
            self._hooks.forget(key)
            if not await self._orphans.left(gone):
                await self.sink.removed(spec=gone.spec)
        for file, errors in desired.orphan_errors.items():
            logger.warning("%s: not loaded: %s", file, "; ".join(errors))
        self.wake()

    async def _hold(self, rollout: Rollout, errors: tuple[str, ...]) -> None:
        if errors == rollout.held:
            return
        rollout.held = errors
        if errors:
            self._scheduler.reset(rollout)
            previous = rollout.status or self._recorded_status(rollout.spec)
            await self._reporter.report(rollout, invalid_status(errors, previous=previous))

    def _recorded_status(self, spec: RolloutSpec) -> Status | None:
        """The status the rollout's durable record shows, from the cached tags (no AWS call)."""
        # By key alone: a broken document may name another function or alias than its record is for.
        for fn in self._store.managed().values():
            for alias, key in managed_entries(fn.tags).items():
                if key == spec.key:
                    record = decoded(self._store, fn, alias)
                    return record_status(record) if record is not None else None
        return None

    # ---- start-up and ticks --------------------------------------------------------------------

    async def start(self) -> None:
        """Read every managed function's record with one scan; others are read when first needed."""
        await self._store.scan_managed()
        await self._orphans.adopt(lambda key: key in self._rollouts)
        for rollout in self._rollouts.values():
            recorded = self._recorded_status(rollout.spec) if rollout.held else None
            if recorded is not None:
                # Held before the records were read: show where the record says it stands.
                await self._reporter.report(rollout, invalid_status(rollout.held, previous=recorded))
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
        """Start a reconcile for every due rollout, after the shared reads; returns the tasks started.

        ``wait``: wait for slow evidence (metric measurements) however long it takes (``tick``).
        """
        if not self._started:
            await self.start()
        now = self._clock()
        looked_at = [r for r in self._rollouts.values() if not r.held]
        started: list[asyncio.Task[None]] = []
        if looked_at and not self._stopping:
            reads = await self._reads.read([r.spec for r in looked_at], now=now, wait=wait)
            due = [r for r in looked_at if self._scheduler.due(r, now)]
            forced = self._scheduler.alias_reads_due(due, now, managed=len(self._rollouts))
            # The source may have changed, or stop come, while the shared reads were made.
            for rollout in (r for r in looked_at if self._managed(r) and not self._stopping):
                self._reporter.saw(rollout, reads.evidence.get(rollout.spec.key, NO_EVIDENCE), at=now)
                if self._scheduler.due(rollout, now):
                    force = rollout.spec.key in forced
                    if not force and self._still_quiet(rollout, reads, now):
                        continue
                    # One the core rolls back goes first in the budget from its very first read.
                    urgent = self._reconciler.would_roll_back(self._inputs(rollout, reads), now)
                    started.append(self._launch(rollout, reads, force=force, urgent=urgent))
                elif self._urgent(rollout, reads, now):
                    started.append(await self._overtake(rollout, reads))
        await self._orphans.persist()
        self.ticks += 1
        for listener in self.tick_listeners:
            listener()
        return started

    def _managed(self, rollout: Rollout) -> bool:
        return self._rollouts.get(rollout.spec.key) is rollout

    def _inputs(self, rollout: Rollout, reads: TickReads) -> Inputs:
        """The rollout's inputs from the tick's reads and its function's tags as cached now."""
        fn = self._store.known(rollout.spec.function_name)
        return reads.inputs(rollout.spec, fn.tags if fn is not None else None)

    def _still_quiet(self, rollout: Rollout, reads: TickReads, now: float) -> bool:
        """The rollout's last answer changed nothing and none of its inputs changed since (``quiet``)."""
        return still_quiet(
            rollout.quiet,
            self._inputs(rollout, reads),
            now=now,
            settings_due=self._observer.settings_due(rollout.spec),
            time_scale=self.settings.time_scale,
        )

    def _urgent(self, rollout: Rollout, reads: TickReads, now: float) -> bool:
        """A rollout the tick would not reconcile, but which the core rolls back on this tick's reads.

        A reconcile slow in an AWS call (throttled, retried, a slow network), or a rollout backing off
        after failures, must not delay its rollback: it is reconciled now, ahead of the backoff, and
        a reconcile in flight is overtaken. A reconcile started for that reason is never overtaken.
        """
        if rollout.held or (rollout.spec.key in self._scheduler.inflight and rollout.urgent):
            return False
        return self._reconciler.would_roll_back(self._inputs(rollout, reads), now)

    async def _overtake(self, rollout: Rollout, reads: TickReads) -> asyncio.Task[None]:
        if rollout.spec.key in self._scheduler.inflight:
            rollout.log.warning("rolling back now: the reconcile in flight is cancelled (it waits on AWS)")
            await self._scheduler.overtake(rollout)
        else:
            rollout.log.warning("rolling back now, ahead of the retry backoff (%d failures)", rollout.failures)
        return self._launch(rollout, reads, force=True, urgent=True)

    def _launch(self, rollout: Rollout, reads: TickReads, *, force: bool, urgent: bool = False) -> asyncio.Task[None]:
        work = self._reconcile_one(rollout, reads, force=force, urgent=urgent)
        return self._scheduler.launch(rollout, work, urgent=urgent)

    async def _reconcile_one(self, rollout: Rollout, reads: TickReads, *, force: bool, urgent: bool) -> None:
        # In this task only: its AWS calls wait behind those of reconciles launched before it.
        serve_in_order(next(self._launches))
        # The inputs as they were before anything was read: a change while it runs voids the skip.
        rollout.quiet = None
        inputs = self._inputs(rollout, reads)
        began, started = self._clock(), time.perf_counter()
        try:
            outcome = await self._reconciler.reconcile(inputs, read_aliases=force, urgent=urgent)
        except asyncio.CancelledError:
            raise
        except WritesStopped:
            # Not a failure: leadership went. Whatever was half-done is in the write-ahead record.
            self._scheduler.stopped_writing(rollout)
            rollout.log.info("write gate closed: reconcile stopped before its next AWS write")
            return
        except Exception as exc:
            if self._managed(rollout):  # else no longer managed: its series are gone and must not come back
                await self._reporter.reconciled(
                    rollout, seconds=time.perf_counter() - started, error=type(exc).__name__
                )
                await self._failed(rollout, exc)
            return
        if not self._managed(rollout):
            return
        await self._reporter.reconciled(rollout, seconds=time.perf_counter() - started, evidence=inputs.evidence)
        self._announce(rollout, inputs, outcome)
        await self._succeeded(rollout, outcome)
        rollout.quiet = remember(outcome.decision, inputs=inputs, started=began, refresh=self.settings.quiet_refresh)

    def _announce(self, rollout: Rollout, inputs: Inputs, outcome: ReconcileResult) -> None:
        """Hand the record's outbox to the notifier; entries done with and now gone are forgotten."""
        announcer, decision = self._announcer, outcome.decision
        if announcer is None or decision.status.phase is Phase.INVALID:
            return  # an Invalid answer wrote nothing: its outbox is the stored one, offered already
        announcer.forgotten(rollout.spec.key, inputs.announced - {entry.id for entry in decision.record.outbox})
        announcer.offer(rollout.spec, decision.record)

    async def _succeeded(self, rollout: Rollout, outcome: ReconcileResult) -> None:
        decision = outcome.decision
        self._scheduler.succeeded(rollout, decision, aliases_read=outcome.aliases_read)
        await self._reporter.report(rollout, decision.status, decision.events, record_changed=decision.record_changed)

    async def _failed(self, rollout: Rollout, exc: Exception) -> None:
        delay = self._scheduler.failed(rollout, transient=isinstance(exc, AwsError) and exc.transient is not None)
        if isinstance(exc, NotFound):
            # The function may have been deleted or re-created: read it afresh next time.
            self._store.forget(rollout.spec.function_name)
        rollout.log.warning("reconcile failed (attempt %d, retry in %.1fs): %s", rollout.failures, delay, exc)
        status = dataclasses.replace(rollout.status or blank_status(), errors=(f"{type(exc).__name__}: {exc}",))
        await self._reporter.report(rollout, status)

    def _decided(self, spec: RolloutSpec, decision: Decision) -> None:
        """A reconcile is about to act: one that rolls back is never overtaken (it is the rollback)."""
        rollout = self._rollouts.get(spec.key)
        if rollout is not None and is_rollback(decision):
            rollout.urgent = True

    def _hook_answered(self, key: str) -> None:
        """A lifecycle hook answered: look at its rollout now, not at the next regular tick."""
        rollout = self._rollouts.get(key)
        if rollout is not None:
            rollout.quiet = None
            self.wake()

    async def _alias_written(self, spec: RolloutSpec, action: UpdateAlias) -> None:
        await self._reporter.alias_written(self._rollouts.get(spec.key), action)

    # ---- the daemon loop -----------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event, updates: AsyncIterator[DesiredState] | None = None) -> None:
        """Tick until ``stop`` is set; then reconciles in flight get ``shutdown_grace`` to finish.

        Those still running after it, and all of them when ``run`` itself is cancelled (leadership
        lost), are cancelled before it returns: nothing of this engine outlives it.
        """
        follower = asyncio.create_task(self._follow(updates)) if updates is not None else None
        stopper = asyncio.create_task(self._stop_when(stop))
        companions_stop = asyncio.Event()
        companions = [asyncio.create_task(companion(companions_stop)) for companion in self.companions]
        try:
            while not stop.is_set():
                await self._guarded_step()
                await self._scheduler.sleep_until_due(stop, self._rollouts.values)
            await self._scheduler.drain(self.settings.shutdown_grace)
        finally:
            stopper.cancel()
            if follower is not None:
                follower.cancel()
            companions_stop.set()
            await _end(companions)
            await self._scheduler.cancel()
            await self._hooks.close()
            self._metrics.close()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        # Reconciles already running may finish; none start after this.
        self._stopping = True
        self.wake()

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


async def _end(tasks: Sequence[asyncio.Task[None]], *, wait: float = 1.0) -> None:
    """Let ``tasks`` return (they were told to stop), for ``wait`` seconds at most; cancel what is left.

    Also when the engine itself is being cancelled (leadership lost): nothing of its outlives it.
    """
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=wait)
    for task in pending:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            logger.error("a companion of the engine failed: %s: %s", type(result).__name__, result)


__all__ = ["Engine", "EngineSettings"]
