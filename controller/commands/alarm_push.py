"""Push-mode alarm events beside an engine (``--alarm-events auto|QUEUE_URL``), for one leadership term.

The daemon adds ``AlarmPush.run`` as a companion (``Engine.companions``) to the engine of the
controller's own account and region, where the queue and the rule are (the engines of other scopes
poll), so the consumer runs exactly while that engine reconciles: in ``operator`` mode while the replica
leads, in ``run`` while it holds the lease (always with ``--lease off``; never in ``--once``, which
polls). A standby never receives a message, so it never deletes one: SQS keeps them for the next
leader, and a restart resumes where the last consumer stopped.

While it runs:

- it waits for the engine's first tick (the rollouts are known then), sets the consumer's filter to
  the alarms the managed rollouts watch and, in ``auto`` mode, hands them to the setup, whose first
  ``ready`` creates or checks the queue and the rule (``controller.analysis.alarm_events``);
- the consumer long-polls the queue and hands each change of a watched alarm to
  ``Engine.alarm_changed``, which wakes the engine when it tells something about ALARM;
- after every tick the watched alarms are read again; when they changed, the consumer filters by
  the new set at once and (``auto``) the rule's pattern follows (one ``PutRule``; a failure is said
  once and tried again, doubling from 1 s to 60 s, until it is written);
- the consumer's health is the gauge ``lambda_rollouts_alarm_events_up`` and ``/readyz``'s
  ``details.alarm_events`` (the consumer logs each change of it once), and while it is healthy the
  cross-check (``controller.analysis.alarm_check``) owes nothing for the time it was not: its
  mismatches are counted in ``lambda_rollouts_alarm_event_mismatch_total``.

Nothing here can end the daemon: the consumer degrades and recovers by itself, and an error of the
rule's sync is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from controller.analysis.alarm_check import CrossCheck, Mismatch
from controller.analysis.alarm_events import (
    AlarmEventConsumer,
    AlarmEventsSetup,
    ConsumerHealth,
    GivenQueue,
    HealthState,
    QueueSource,
)
from controller.aws import AwsClients
from controller.aws.errors import AwsError
from controller.commands.options import AlarmEvents
from controller.observability.http import Health
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine

logger = logging.getLogger("controller.alarm_push")

#: The name of the ``/readyz`` detail.
DETAIL = "alarm_events"
#: What ``/readyz`` says while this replica does not reconcile (a standby, or before its first term).
NOT_LEADING = "not consuming: only the replica that reconciles consumes the alarm events"
_SYNC_BACKOFF = (1.0, 60.0)


class AlarmPush:
    """Push mode for one engine: the consumer, the rule's pattern and the health (see the module docstring)."""

    def __init__(
        self, *, engine: Engine, aws: AwsClients, settings: AlarmEvents, metrics: Metrics, health: Health
    ) -> None:
        self._engine = engine
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._health = health
        self._setup = AlarmEventsSetup(events=aws.events, sqs=aws.sqs) if settings.queue_url is None else None
        self._checker = CrossCheck(tolerance=settings.tolerance, on_mismatch=self._mismatch)
        self._watched: frozenset[str] = frozenset()
        self._consumer: AlarmEventConsumer | None = None
        self._changed = asyncio.Event()
        self._ticked = asyncio.Event()

    def _source(self) -> QueueSource:
        if self._setup is not None:
            return self._setup
        assert self._settings.queue_url is not None
        return GivenQueue(sqs=self._aws.sqs, url=self._settings.queue_url)

    def watched(self) -> frozenset[str]:
        """The alarms the managed rollouts watch."""
        return frozenset(name for r in self._engine.rollouts().values() for name in r.spec.analysis.alarms)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume while the engine runs (until ``stop``); every trace of it is gone when it returns."""
        engine = self._engine
        engine.tick_listeners.append(self._after_tick)
        engine.alarms.checker = self._checker
        try:
            if not await _first(self._ticked.wait(), stop):
                return
            self._watched = self.watched()
            if self._setup is not None:
                await self._setup.sync(self._watched)  # before the first ensure: remembered for it
            consumer = AlarmEventConsumer(
                sqs=self._aws.sqs,
                queue=self._source(),
                on_change=engine.alarm_changed,
                watched=self._watched,
                wait_seconds=self._settings.wait_seconds,
                on_health=self._health_changed,
            )
            self._consumer = consumer
            await asyncio.gather(consumer.run(stop), self._follow(stop))
        finally:
            engine.tick_listeners.remove(self._after_tick)
            engine.alarms.checker = None
            self._checker.consuming(None)
            self._metrics.set_alarm_events_up(False)
            self._health.set_detail(DETAIL, NOT_LEADING)

    def _after_tick(self) -> None:
        """After every tick (quick, never raising): the consumer follows the watched alarms at once."""
        self._ticked.set()
        consumer = self._consumer
        if consumer is None:
            return
        watched = self.watched()
        if watched != self._watched:
            self._watched = watched
            consumer.watch(watched)
            self._changed.set()

    async def _follow(self, stop: asyncio.Event) -> None:
        """``auto``: the rule's pattern follows the watched alarms (one PutRule per change, retried)."""
        if self._setup is None:
            return
        failures, said = 0, ""
        while await _first(self._changed.wait(), stop):
            self._changed.clear()
            try:
                await self._setup.sync(self._watched)
            except AwsError as error:
                failures += 1
                reason = f"{error.code}: {error.message}"
                if reason != said:
                    logger.warning(
                        "alarm-events rule not updated for the watched alarms (%s); retrying; meanwhile the "
                        "polls see the alarms it misses",
                        reason,
                    )
                said = reason
                self._changed.set()
                delay = min(_SYNC_BACKOFF[1], _SYNC_BACKOFF[0] * 2 ** (failures - 1))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                continue
            if said:
                logger.info("alarm-events rule updated for the watched alarms")
            failures, said = 0, ""

    def _health_changed(self, health: ConsumerHealth) -> None:
        up = health.state is HealthState.HEALTHY
        self._metrics.set_alarm_events_up(up)
        self._health.set_detail(DETAIL, f"{health.state.value}: {health.reason}")
        self._checker.consuming(health.since if up else None)

    def _mismatch(self, mismatch: Mismatch) -> None:
        self._metrics.alarm_event_mismatch(kind=mismatch.kind.value)


async def _first(wanted: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Wait for ``wanted`` or ``stop``; True when ``wanted`` came first."""
    wanted_task = asyncio.ensure_future(wanted)
    stop_task = asyncio.ensure_future(stop.wait())
    await asyncio.wait({wanted_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    wanted_task.cancel()
    stop_task.cancel()
    return wanted_task.done() and not wanted_task.cancelled()


__all__ = ["DETAIL", "NOT_LEADING", "AlarmPush"]
