"""The asyncio engine: which rollouts to reconcile when, with what shared reads, and how to stop.

A tick reconciles every rollout that is not backing off, concurrently, one task per rollout (a
rollout is never handled by two tasks at once: the tick awaits them all). The reads shared by all
rollouts are made once per tick: the alarms in ALARM (one paginated ``DescribeAlarms``), and the
control requests (one ``GetResources`` per distinct alias name). An idle rollout then costs no AWS
call at all; its alias is re-read only on a slow drift check, spread over time and capped per tick.

Scheduling: ticks every ``interval`` seconds, earlier when the core asked to be woken
(``requeue_after``, e.g. the end of a pause) or the source changed. A rollout that fails (AWS error,
throttling, corrupt record) backs off alone, exponentially with jitter; one whose input is bad
(``Invalid``) is retried slowly, because publishing the missing version fixes it without any change
to its document. ``run`` stops on ``stop``: the tick in flight finishes its writes, then it returns.

The clock is injected: ``now`` given to the core comes from it, so tests drive ticks with a fake
clock and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from controller.aws import AwsClients
from controller.aws.errors import NotFound
from controller.core.types import Decision, Event, Phase, Status
from controller.observability.logs import RolloutLogger, rollout_logger
from controller.runtime.backoff import backoff_delay
from controller.runtime.observe import Observer, TickReads
from controller.runtime.reconcile import Clock, Outcome, Reconciler
from controller.runtime.records import RecordStore
from controller.runtime.sink import FanoutSink, StatusSink
from controller.sources import DesiredState
from controller.spec.model import RolloutSpec

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


def blank_status(message: str = "") -> Status:
    return Status(
        phase=Phase.PENDING,
        stable_version=None,
        canary_version=None,
        canary_weight=0,
        current_step=0,
        steps=0,
        step_started_at=None,
        message=message,
        reason="",
    )


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
    ) -> None:
        self.settings = settings or EngineSettings()
        self._aws = aws
        self._clock = clock
        self._rand = rand
        self._store = RecordStore(aws)
        self._observer = Observer(aws)
        self._reconciler = Reconciler(
            aws=aws, store=self._store, observer=self._observer, clock=clock, time_scale=self.settings.time_scale
        )
        self.sink = FanoutSink(sinks)
        self._rollouts: dict[str, Rollout] = {}
        self._started = False
        self._stopping = False
        self._wake = asyncio.Event()
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
        return rollout.status if rollout else None

    async def apply(self, desired: DesiredState) -> None:
        """Adopt a source's view: new and changed rollouts run at the next tick, removed ones stop."""
        for key, spec in desired.rollouts.items():
            rollout = self._rollouts.get(key)
            if rollout is None:
                rollout = self._rollouts[key] = Rollout(spec=spec, log=rollout_logger(logger, spec))
            elif rollout.spec != spec:
                rollout.spec, rollout.log = spec, rollout_logger(logger, spec)
                rollout.failures, rollout.retry_at = 0, 0.0
            await self._hold(rollout, desired.held.get(key, ()))
        for key in [k for k in self._rollouts if k not in desired.rollouts]:
            # Management stops; the alias and the record stay as they are.
            gone = self._rollouts.pop(key)
            self._observer.forget_rollout(key)
            await self.sink.removed(spec=gone.spec)
        for file, errors in desired.orphan_errors.items():
            logger.warning("%s: not loaded: %s", file, "; ".join(errors))
        self._wake.set()

    async def _hold(self, rollout: Rollout, errors: tuple[str, ...]) -> None:
        if errors == rollout.held:
            return
        rollout.held = errors
        if errors:
            rollout.failures, rollout.retry_at = 0, 0.0
            held = dataclasses.replace(
                rollout.status or blank_status(),
                phase=Phase.INVALID,
                errors=errors,
                message="document invalid: held where it is, nothing in AWS is touched",
            )
            await self._report(rollout, held, ())

    # ---- start-up and ticks --------------------------------------------------------------------

    async def start(self) -> None:
        """Read every managed function's record with one scan; others are read when first needed."""
        await self._store.scan_managed()
        self._started = True

    async def tick(self) -> None:
        """One pass over every rollout that is due: shared reads once, then each rollout's reconcile."""
        if not self._started:
            await self.start()
        now = self._clock()
        due = [r for r in self._rollouts.values() if not r.held and r.retry_at <= now]
        if due and not self._stopping:
            reads = await self._tick_reads(due)
            forced = self._alias_reads_due(due, now)
            await asyncio.gather(*(self._reconcile_one(r, reads, force=r.spec.key in forced) for r in due))
        self.ticks += 1
        for listener in self.tick_listeners:
            listener()

    async def _tick_reads(self, due: list[Rollout]) -> TickReads:
        watched = any(r.spec.analysis.alarms for r in due)
        alarms = await self._aws.cloudwatch.alarms_in_alarm() if watched else frozenset()
        await self._observer.check_alarms(r.spec for r in due)
        requests = await self._store.requests(r.spec.alias for r in due)
        return TickReads(alarms_in_alarm=alarms, requests=requests)

    def _alias_reads_due(self, due: list[Rollout], now: float) -> set[str]:
        """Rollouts whose aliases are read this tick: all at start-up, drift checks up to the cap."""
        forced = {r.spec.key for r in due if r.drift_at is None}
        cap = max(1, math.ceil(len(self._rollouts) * self.settings.drift_fraction))
        drifting = sorted((r for r in due if r.drift_at is not None and r.drift_at <= now), key=_drift_due)
        forced.update(r.spec.key for r in drifting[:cap])
        return forced

    async def _reconcile_one(self, rollout: Rollout, reads: TickReads, *, force: bool) -> None:
        try:
            outcome = await self._reconciler.reconcile(rollout.spec, reads, read_aliases=force)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(rollout, exc)
            return
        await self._succeeded(rollout, outcome)

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
        await self._report(rollout, decision.status, decision.events)

    async def _failed(self, rollout: Rollout, exc: Exception) -> None:
        now = self._clock()
        rollout.failures += 1
        delay = backoff_delay(
            rollout.failures, base=self.settings.interval, cap=self.settings.backoff_cap, rand=self._rand
        )
        rollout.retry_at = now + delay
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

    async def _report(self, rollout: Rollout, status: Status, events: tuple[Event, ...]) -> None:
        if status != rollout.status:
            previous, rollout.status = rollout.status, status
            await self.sink.status_changed(spec=rollout.spec, status=status, previous=previous)
        for event in events:
            await self.sink.event(spec=rollout.spec, event=event)

    # ---- the daemon loop -----------------------------------------------------------------------

    async def run(self, *, stop: asyncio.Event, updates: AsyncIterator[DesiredState] | None = None) -> None:
        """Tick until ``stop`` is set; the tick in flight completes its writes first."""
        follower = asyncio.create_task(self._follow(updates)) if updates is not None else None
        stopper = asyncio.create_task(self._stop_when(stop))
        try:
            while not stop.is_set():
                await self._guarded_tick()
                await self._sleep_until_due(stop)
        finally:
            stopper.cancel()
            if follower is not None:
                follower.cancel()

    async def _stop_when(self, stop: asyncio.Event) -> None:
        await stop.wait()
        # Reconciles already running finish; none start after this.
        self._stopping = True
        self._wake.set()

    async def _follow(self, updates: AsyncIterator[DesiredState]) -> None:
        async for desired in updates:
            await self.apply(desired)

    async def _guarded_tick(self) -> None:
        try:
            await self.tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            # Shared reads failed (e.g. CloudWatch down): nothing was decided; try again next tick.
            logger.exception("tick failed")

    async def _sleep_until_due(self, stop: asyncio.Event) -> None:
        if stop.is_set():
            return
        now = self._clock()
        wakes = [r.wake_at for r in self._rollouts.values() if r.wake_at is not None]
        wakes += [r.retry_at for r in self._rollouts.values() if r.retry_at > now]
        due = min([now + self.settings.interval, *wakes])
        # A floor keeps a core that asks for "now" again and again from spinning the CPU.
        delay = max(due - now, min(0.05, self.settings.interval))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)


def _drift_due(rollout: Rollout) -> float:
    return rollout.drift_at or 0.0


def _drift_order(rollout: Rollout) -> int:
    """A stable per-rollout number that spreads drift checks evenly (not Python's salted hash)."""
    return zlib.crc32(rollout.spec.key.encode())
