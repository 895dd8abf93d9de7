"""The delivery queue beside the engine: ``Notifier.offer`` never blocks, never raises, never waits for a receiver.

A rollout must never be slowed down by a chat service, so the engine only *offers* a transition;
everything after that happens on the notifier's own tasks:

- **Routing**: ``offer`` picks the targets whose subscriptions match (``targets_for``) and appends
  one job per target to that target's queue. It is a few dictionary operations: no I/O, no await.
- **Bounded**: each target's queue holds at most ``delivery.queueSize`` jobs (the one being sent
  included). A full queue drops the new job, counts it (``notification_dropped``) and logs it: a
  receiver that is down for an hour costs a bounded amount of memory, not all of it.
- **In order, independently**: one worker task per target sends its queue in order, so a dead Slack
  delays nothing bound for the webhook, and a rollout's "started" never arrives after its "promoted"
  on the same target.
- **Retries**: a failure worth retrying (429, 5xx, connection errors, timeouts) is tried again after
  an exponential backoff with full jitter (a random delay between 0 and ``base * 2^(attempt-1)``,
  capped), or after the receiver's ``Retry-After`` when that is longer. Every attempt is bounded by
  ``attemptTimeout``; after ``maxAttempts``, or when the next attempt would start later than
  ``maxAge`` after the job was queued, the message is failed and counted.
- **Idempotent**: a transition's id is stable, and an (id, target) pair is queued at most once per
  process (the last ``_REMEMBERED`` finished pairs are remembered), so the engine may offer the same
  transition again after a restart, or on every tick until it recorded it, without duplicates here.
  Exactly once across restarts is the engine's part: it keeps each transition in the durable record's
  outbox until ``on_finished(transition_id, target, outcome)`` said every target is done with it
  (``controller.core.announce``); ``on_delivered`` hears only the successes, ``pending()`` shows what
  is still on its way.

Nothing secret is logged: lines name the target and its redacted destination (``Channel.describe``)
and the failure kind, never a URL, header, body or link. The clock, the sleep and the random source
are injected, so tests drive backoff without waiting.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .channel import Channel, DeliveryError, Prepared
from .config import DeliveryPolicy, NotificationConfig, targets_for
from .http import HttpPoster
from .links import GateSigner
from .transition import Transition, Trigger

__all__ = ["Notifier", "NotifyObserver", "OnDelivered", "OnFinished", "Pending", "full_jitter"]

log = logging.getLogger(__name__)

# Finished (id, target) pairs remembered to keep offer idempotent; far more than a process sees in an hour.
_REMEMBERED = 4096

SENT = "sent"
FAILED = "failed"


class NotifyObserver(Protocol):
    """Told what became of each message (the Prometheus exporter implements it). Must be cheap."""

    def notification_target(self, *, target: str) -> None:
        """``target`` exists: its series can start at 0."""

    def notification(self, *, target: str, outcome: str) -> None:
        """One message to ``target`` finished: ``outcome`` is "sent" or "failed"."""

    def notification_dropped(self, *, target: str) -> None:
        """One message to ``target`` was dropped because its queue was full."""


OnDelivered = Callable[[str, str], Any]
# (transition id, target, "sent" | "failed"): a message is done with, whichever way it ended.
OnFinished = Callable[[str, str, str], Any]


@dataclass(frozen=True)
class Pending:
    """A message not delivered yet: queued, or being sent (``sending``) after ``attempts`` attempts."""

    transition_id: str
    target: str
    trigger: Trigger
    rollout_key: str
    queued_at: float
    attempts: int
    sending: bool


def full_jitter(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): uniform in [0, min(cap, base * 2^(attempt-1))]."""
    return rand() * min(cap, base * 2.0 ** (attempt - 1))


def _started(observer: NotifyObserver, *, target: str) -> None:
    observer.notification_target(target=target)


def _dropped(observer: NotifyObserver, *, target: str) -> None:
    observer.notification_dropped(target=target)


def _finished(observer: NotifyObserver, *, target: str, outcome: str) -> None:
    observer.notification(target=target, outcome=outcome)


@dataclass(eq=False)
class _Job:
    transition: Transition
    queued_at: float
    attempts: int = 0


@dataclass(eq=False)
class _Lane:
    """One target: its channel, its queue (head = the job being sent) and its worker."""

    channel: Channel
    jobs: collections.deque[_Job] = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    empty: asyncio.Event = field(default_factory=asyncio.Event)
    sending: bool = False
    dropping: int = 0  # messages dropped since the queue was last not full
    task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.empty.set()


class Notifier:
    """Queues transitions per target and delivers them; use ``async with`` (or ``start`` / ``stop``)."""

    def __init__(
        self,
        *,
        config: NotificationConfig,
        channels: Iterable[Channel],
        signer: GateSigner | None = None,
        observer: NotifyObserver | None = None,
        on_delivered: OnDelivered | None = None,
        on_finished: OnFinished | None = None,
        http: HttpPoster | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._policy: DeliveryPolicy = config.delivery
        self._lanes = {channel.name: _Lane(channel) for channel in channels}
        self._signer = signer
        self._observer = observer
        self._on_delivered = on_delivered
        self._on_finished = on_finished
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._queued: set[tuple[str, str]] = set()
        self._finished: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        for name in self._lanes:
            self._tell(functools.partial(_started, target=name))

    @property
    def signer(self) -> GateSigner | None:
        """What issues (and so must verify) the one-click links; None when links are off."""
        return self._signer

    # ---- the engine's side -------------------------------------------------------------------------

    def offer(
        self, transition: Transition, *, opt_in: Collection[str] = (), announced: Collection[str] = ()
    ) -> tuple[str, ...]:
        """Queue ``transition`` for every matching target; returns the targets it was queued for.

        ``opt_in``: the rollout's ``spec.notifications``. ``announced``: targets the durable record
        says already have it (after a restart). Never blocks and never raises.
        """
        try:
            return self._offer(transition, opt_in=opt_in, announced=announced)
        except Exception as error:  # a bug here must cost a message, never a reconcile
            log.error("transition %s not queued: %s", getattr(transition, "id", "?"), type(error).__name__)
            return ()

    def _offer(self, transition: Transition, *, opt_in: Collection[str], announced: Collection[str]) -> tuple[str, ...]:
        queued: list[str] = []
        for target in targets_for(self._config, transition, rollout_opt_in=opt_in):
            key = (transition.id, target)
            lane = self._lanes.get(target)
            if lane is None or target in announced or key in self._queued or key in self._finished:
                continue
            if len(lane.jobs) >= self._policy.queue_size:
                # One warning when a queue starts dropping, one when it has room again: a receiver down
                # during a busy hour must not flood the logs as well.
                level = logging.WARNING if lane.dropping == 0 else logging.DEBUG
                self._log(level, lane, transition, "queue full (%d): dropped", self._policy.queue_size)
                lane.dropping += 1
                self._tell(functools.partial(_dropped, target=target))
                continue
            if lane.dropping:
                self._log(
                    logging.WARNING, lane, transition, "queue has room again; %d dropped while full", lane.dropping
                )
                lane.dropping = 0
            lane.jobs.append(_Job(transition, queued_at=self._clock()))
            self._queued.add(key)
            lane.empty.clear()
            lane.wake.set()
            queued.append(target)
            self._log(logging.DEBUG, lane, transition, "queued")
        return tuple(queued)

    def pending(self) -> tuple[Pending, ...]:
        """Every message not delivered yet, per target in queue order."""
        return tuple(
            Pending(
                transition_id=job.transition.id,
                target=name,
                trigger=job.transition.trigger,
                rollout_key=job.transition.rollout_key,
                queued_at=job.queued_at,
                attempts=job.attempts,
                sending=position == 0 and lane.sending,
            )
            for name, lane in self._lanes.items()
            for position, job in enumerate(lane.jobs)
        )

    # ---- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        for lane in self._lanes.values():
            if lane.task is None:
                lane.task = asyncio.create_task(self._work(lane), name=f"notify:{lane.channel.name}")

    async def idle(self) -> None:
        """Wait until every queue is empty (everything sent or failed)."""
        for lane in self._lanes.values():
            await lane.empty.wait()

    async def stop(self, *, drain: float = 0.0) -> None:
        """Stop the workers, after giving the queues up to ``drain`` seconds to empty.

        What is still queued stays in ``pending()`` (a later ``start`` sends it); a new process does
        not have it, but the engine offers it again there, because it was never reported delivered.
        """
        if drain > 0:
            try:
                async with asyncio.timeout(drain):
                    await self.idle()
            except TimeoutError:
                log.info("notifications still queued at shutdown: %d", len(self.pending()))
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            lane.task = None
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> Notifier:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- the workers -------------------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        while True:
            while not lane.jobs:
                lane.wake.clear()
                await lane.wake.wait()
            job = lane.jobs[0]
            lane.sending = True
            try:
                await self._deliver(lane, job)
            finally:
                # Stopped mid-send, the job stays at the head: pending() still shows it and a restarted
                # worker sends it; it was never reported delivered, so the engine offers it again anyway.
                lane.sending = False
            lane.jobs.popleft()
            key = (job.transition.id, lane.channel.name)
            self._queued.discard(key)
            self._finished[key] = None
            while len(self._finished) > _REMEMBERED:
                self._finished.popitem(last=False)
            if not lane.jobs:
                lane.empty.set()

    async def _deliver(self, lane: _Lane, job: _Job) -> None:
        channel, transition, policy = lane.channel, job.transition, self._policy
        try:
            links = None
            if self._signer is not None:
                links = self._signer.links_for(transition, approver=channel.name, now=self._clock())
            prepared = channel.prepare(transition, links)
        except Exception as problem:  # a rendering bug fails this message, not the worker
            self._finish(lane, job, FAILED, type(problem).__name__)
            return
        while True:
            job.attempts += 1
            error = await self._attempt(channel, prepared)
            if error is None:
                self._finish(lane, job, SENT)
                return
            if not error.retryable:
                self._finish(lane, job, FAILED, error.kind)
                return
            delay = full_jitter(job.attempts, base=policy.base_delay, cap=policy.max_delay, rand=self._rand)
            if error.retry_after is not None:
                delay = max(delay, error.retry_after)
            if job.attempts >= policy.max_attempts or self._clock() + delay - job.queued_at > policy.max_age:
                self._finish(lane, job, FAILED, error.kind)
                return
            self._log(
                logging.DEBUG,
                lane,
                transition,
                "attempt %d failed (%s); next in %.1fs",
                job.attempts,
                error.kind,
                delay,
            )
            await self._sleep(delay)

    async def _attempt(self, channel: Channel, prepared: Prepared) -> DeliveryError | None:
        """One bounded attempt: None when delivered, else what went wrong."""
        try:
            async with asyncio.timeout(self._policy.attempt_timeout):
                await channel.deliver(prepared)
        except TimeoutError:
            return DeliveryError("timeout", retryable=True)
        except DeliveryError as failure:
            return failure
        except Exception as failure:  # reported by its kind only: an unexpected error's text may hold a URL
            return DeliveryError(type(failure).__name__, retryable=False)
        return None

    def _finish(self, lane: _Lane, job: _Job, outcome: str, kind: str = "") -> None:
        target = lane.channel.name
        if outcome == SENT:
            self._log(logging.INFO, lane, job.transition, "sent (%d attempt(s))", job.attempts)
            if self._on_delivered is not None:
                try:
                    self._on_delivered(job.transition.id, target)
                except Exception as error:
                    log.error("on_delivered failed for %s: %s", job.transition.id, type(error).__name__)
        else:
            self._log(logging.WARNING, lane, job.transition, "failed after %d attempt(s): %s", job.attempts, kind)
        self._tell(functools.partial(_finished, target=target, outcome=outcome))
        if self._on_finished is not None:
            try:
                self._on_finished(job.transition.id, target, outcome)
            except Exception as error:
                log.error("on_finished failed for %s: %s", job.transition.id, type(error).__name__)

    # ---- helpers -----------------------------------------------------------------------------------

    def _tell(self, call: Callable[[NotifyObserver], object]) -> None:
        if self._observer is None:
            return
        try:
            call(self._observer)
        except Exception as error:
            log.error("notification observer failed: %s", type(error).__name__)

    def _log(self, level: int, lane: _Lane, transition: Transition, message: str, *args: object) -> None:
        if not log.isEnabledFor(level):
            return
        extra = {
            "target": lane.channel.name,
            "destination": lane.channel.describe(),
            "transition": transition.id,
            "trigger": transition.trigger.value,
            "namespace": transition.namespace,
            "rollout": transition.name,
        }
        prefix = "notification %s of %s to %s: "
        log.log(
            level,
            prefix + message,
            transition.trigger.value,
            transition.rollout_key,
            lane.channel.name,
            *args,
            extra=extra,
        )
