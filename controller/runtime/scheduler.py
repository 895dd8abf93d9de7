"""The engine's scheduler: which rollouts a tick reconciles, when the next tick comes, what runs now.

- **Due**: a rollout is reconciled by a tick unless its document is held (invalid), it backs off
  after failures, or its reconcile is still in flight: a reconcile slow in an AWS call holds up no
  other rollout and no later tick, and a rollout is never reconciled by two tasks at once. (A
  rollout the core would roll back is reconciled anyway: the engine's ``urgent`` path overtakes.)
- **Backoff**: a failed reconcile (AWS error, throttling, corrupt record) backs its rollout off alone,
  exponentially with jitter, from one interval; from ``TRANSIENT_BACKOFF`` (1 s) when AWS only
  throttled or answered 5xx a few times in a row (the caller's retries ran out within half a second:
  a fault that passes, not a reason to hold a pause several seconds past its end); one whose input
  is bad (``Invalid``) is retried slowly, because publishing a missing version fixes it without any
  change to its document.
- **Drift checks**: every rollout's aliases are read once at start-up, then every ``drift_interval``,
  the first check spread anywhere in that interval (a stable order per rollout) and never more than
  ``drift_fraction`` of all rollouts per tick, so the cost stays flat.
- **When**: ticks every ``interval`` seconds, earlier when the core asked to be woken
  (``requeue_after``: the end of a pause), a retry is due, or ``wake`` is called (the source
  changed, a hook answered, a control request came).
- **In flight**: the reconcile tasks, at most one per rollout; ``drain`` gives them the shutdown
  grace, ``cancel`` stops them (safe at any instant: the write-ahead record).

The clock is injected, so tests drive ticks with a fake one and never sleep.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import zlib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from controller.core.types import Decision, Phase
from controller.runtime.backoff import backoff_delay
from controller.runtime.rollouts import Rollout

logger = logging.getLogger("controller.engine")
Clock = Callable[[], float]
#: The first backoff after a transient AWS failure (then doubling, up to the cap like any other).
TRANSIENT_BACKOFF = 1.0


class Scheduler:
    """Timing for every rollout, and the reconciles in flight."""

    def __init__(
        self,
        *,
        interval: float,
        drift_interval: float,
        drift_fraction: float,
        backoff_cap: float,
        invalid_retry_cap: float,
        clock: Clock,
        rand: Callable[[], float],
    ) -> None:
        self.interval = interval
        self._drift_interval = drift_interval
        self._drift_fraction = drift_fraction
        self._backoff_cap = backoff_cap
        self._invalid_retry_cap = invalid_retry_cap
        self._clock = clock
        self._rand = rand
        # The reconcile task of each rollout being reconciled right now (at most one per rollout).
        self.inflight: dict[str, asyncio.Task[None]] = {}
        # ``_wake`` interrupts the loop's sleep: a tick starts at once when ``_tick_requested``,
        # otherwise the sleep is planned again (a finished reconcile wants an earlier look).
        self._wake = asyncio.Event()
        self._tick_requested = False
        self._next_tick_at = math.inf

    # ---- which rollouts, and which reads ----

    def due(self, rollout: Rollout, now: float) -> bool:
        return not rollout.held and rollout.retry_at <= now and rollout.spec.key not in self.inflight

    def alias_reads_due(self, due: Iterable[Rollout], now: float, *, managed: int) -> set[str]:
        """Rollouts whose aliases are read this tick: all at start-up, drift checks up to the cap."""
        due = list(due)
        forced = {r.spec.key for r in due if r.drift_at is None}
        cap = max(1, math.ceil(managed * self._drift_fraction))
        drifting = sorted((r for r in due if r.drift_at is not None and r.drift_at <= now), key=_drift_due)
        forced.update(r.spec.key for r in drifting[:cap])
        return forced

    # ---- after a reconcile ----

    def succeeded(self, rollout: Rollout, decision: Decision, *, aliases_read: bool) -> None:
        now = self._clock()
        if aliases_read:
            rollout.drift_at = now + self._drift_delay(rollout)
        if decision.status.phase is Phase.INVALID:
            # Bad input: retried slowly (a version may get published), nothing was written.
            rollout.failures += 1
            rollout.retry_at = now + self._backoff(rollout, cap=self._invalid_retry_cap)
        else:
            rollout.failures, rollout.retry_at = 0, 0.0
        rollout.wake_at = now + decision.requeue_after if decision.requeue_after is not None else None

    def failed(self, rollout: Rollout, *, transient: bool = False) -> float:
        """Back the rollout off after a failure; returns the delay. Its aliases are read before the next decide.

        ``transient``: AWS throttled or failed and the retries ran out (see the module docstring).
        """
        now = self._clock()
        rollout.failures += 1
        base = min(self.interval, TRANSIENT_BACKOFF) if transient else self.interval
        delay = backoff_delay(rollout.failures, base=base, cap=self._backoff_cap, rand=self._rand)
        rollout.retry_at = now + delay
        rollout.wake_at = None  # the retry time says when to look again
        # Whatever failed may have left the alias moved: read it before deciding again.
        rollout.drift_at = now
        return delay

    def stopped_writing(self, rollout: Rollout) -> None:
        """Leadership went mid-reconcile: the next leader (maybe us) reads the aliases first."""
        rollout.drift_at = self._clock()

    def reset(self, rollout: Rollout) -> None:
        """The document changed: a backoff for the old one does not hold the new one back."""
        rollout.failures, rollout.retry_at = 0, 0.0

    def _backoff(self, rollout: Rollout, *, cap: float) -> float:
        return backoff_delay(rollout.failures, base=self.interval, cap=cap, rand=self._rand)

    def _drift_delay(self, rollout: Rollout) -> float:
        """The first drift check lands anywhere in the interval, so checks spread out over ticks."""
        if rollout.drift_at is None:
            return self._drift_interval * (0.5 + 0.5 * _drift_order(rollout) / 0xFFFFFFFF)
        return self._drift_interval

    # ---- the reconciles in flight ----

    def launch(self, rollout: Rollout, work: Coroutine[Any, Any, None], *, urgent: bool = False) -> asyncio.Task[None]:
        key = rollout.spec.key
        rollout.urgent = urgent
        task = asyncio.create_task(work, name=f"reconcile {key}")
        self.inflight[key] = task
        task.add_done_callback(functools.partial(self._landed, rollout))
        return task

    async def overtake(self, rollout: Rollout) -> None:
        """Cancel the rollout's reconcile in flight (it waits on AWS) so an urgent one can start."""
        running = self.inflight.get(rollout.spec.key)
        if running is not None:
            running.cancel()
            await asyncio.wait({running})

    def _landed(self, rollout: Rollout, task: asyncio.Task[None]) -> None:
        """A reconcile ended: free its rollout for the next tick, which may now be due earlier."""
        key = rollout.spec.key
        if self.inflight.get(key) is task:
            del self.inflight[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("reconcile of %s crashed", key, exc_info=exc)
        look = self.next_look(rollout, self._clock())
        if look is not None and look < self._next_tick_at:
            self._wake.set()

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the reconciles in flight to finish their writes."""
        if self.inflight:
            logger.info("waiting up to %.1fs for %d reconcile(s) in flight", grace, len(self.inflight))
            await asyncio.wait(set(self.inflight.values()), timeout=grace)

    async def cancel(self) -> None:
        # Safe at any instant: a cancelled reconcile leaves AWS either before its next write or with
        # that write named in the write-ahead record, which the next controller completes.
        tasks = list(self.inflight.values())
        if tasks:
            logger.warning("cancelling %d reconcile(s) still in flight", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- when the next tick comes ----

    def wake(self) -> None:
        """Start the next tick now rather than at the end of the interval."""
        self._tick_requested = True
        self._wake.set()

    def next_look(self, rollout: Rollout, now: float) -> float | None:
        """When the rollout wants a tick before the regular one (None: the regular one will do)."""
        if rollout.held or rollout.spec.key in self.inflight:
            return None
        if rollout.retry_at > now:
            return rollout.retry_at
        return rollout.wake_at

    async def sleep_until_due(self, stop: asyncio.Event, rollouts: Callable[[], Iterable[Rollout]]) -> None:
        """Sleep until the regular tick or a rollout's earlier look; ``wake`` cuts it short.

        The regular tick's time is fixed when the sleep starts, so reconciles finishing meanwhile
        can only move it earlier, never push it back.
        """
        regular = self._clock() + self.interval
        while not stop.is_set() and not self._tick_requested:
            now = self._clock()
            looks = (self.next_look(r, now) for r in rollouts())
            due = min([regular, *(look for look in looks if look is not None)])
            # A floor keeps a core that asks for "now" again and again from spinning the CPU.
            delay = max(due - now, min(0.05, self.interval))
            self._next_tick_at = now + delay
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                break
        self._tick_requested = False
        self._next_tick_at = math.inf


def _drift_due(rollout: Rollout) -> float:
    return rollout.drift_at or 0.0


def _drift_order(rollout: Rollout) -> int:
    """A stable per-rollout number that spreads drift checks evenly (not Python's salted hash)."""
    return zlib.crc32(rollout.spec.key.encode())


__all__ = ["Scheduler"]
