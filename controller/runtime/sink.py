"""Where the engine reports what it sees: the ``StatusSink`` seam.

The engine knows nothing about Prometheus, Kubernetes ``.status`` or terminals; it calls every
registered sink when a rollout's status changes, on every transition ``Event``, after every
reconcile (``Reconciled``: its duration, error kind and the watched alarms' states), on every alias
write (``AliasWritten``, with the rollback reaction time when it restored stable after an alarm), and
when a rollout stops being managed. Metrics exporters and Kubernetes status writers implement this
protocol, so adding an output never touches the reconcile loop. The two outputs every daemon has
live here: ``LogSink`` (log lines) and ``MetricsSink`` (Prometheus, ``controller.observability``,
which knows nothing of the engine).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.reasons import Reason
from controller.core.types import Event, Phase, Status
from controller.document.model import RolloutSpec
from controller.observability.logs import rollout_logger
from controller.observability.prometheus import Metrics, promotion_kind, strategy_label
from controller.runtime.announcing import Announcer

# States reported for a watched alarm. The engine reads only the alarms in ALARM (one call per tick
# for every rollout), so any other state of an existing alarm (OK or INSUFFICIENT_DATA) is reported
# as OK, meaning "not in ALARM"; an alarm that does not exist is MISSING.
ALARM, OK, MISSING = "ALARM", "OK", "MISSING"
# How the controller first knew of the alarm behind a rollback: a tick's read, or a pushed event.
POLL, EVENT = "poll", "event"


@dataclass(frozen=True)
class Reconciled:
    """One reconcile of one rollout, as the engine saw it."""

    seconds: float
    # A short error kind (the exception's class name), None when the reconcile succeeded.
    error: str | None = None
    # Watched alarm -> ALARM, OK or MISSING (see above); empty when the rollout watches none.
    alarm_states: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AliasWritten:
    """One alias write AWS accepted."""

    alias: str
    # The write restores the stable version (a rollback), not a rollout step.
    rollback: bool = False
    # Seconds from the instant the controller first knew a watched alarm was in ALARM to this write,
    # when this is the write that restored stable after it, and how it knew (POLL or EVENT); else None.
    reaction_seconds: float | None = None
    reaction_source: str | None = None


class StatusSink(Protocol):
    """An output of the engine. Methods must be quick: they run on the reconcile path."""

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None: ...

    async def event(self, *, spec: RolloutSpec, event: Event) -> None: ...

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None: ...

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None: ...

    async def removed(self, *, spec: RolloutSpec) -> None: ...


class LogSink:
    """Turns status changes and transitions into log lines carrying the rollout's identity."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("controller.rollout")

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        log = rollout_logger(self._logger, spec, phase=status.phase)
        level = logging.WARNING if status.errors else logging.INFO
        log.log(
            level,
            "stable=%s canary=%s weight=%d%% step=%d/%d %s",
            status.stable_version,
            status.canary_version,
            status.canary_weight,
            status.current_step,
            status.steps,
            "; ".join(status.errors) or status.message,
        )

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        level = logging.WARNING if event.warning else logging.INFO
        rollout_logger(self._logger, spec).log(level, "%s: %s", event.reason, event.message)

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        # Failures are logged by the engine with their retry delay; a success is not news.
        return

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        if write.reaction_seconds is not None:
            rollout_logger(self._logger, spec).info(
                "alias %s restored to stable %.3fs after the alarm was first seen (%s)",
                write.alias,
                write.reaction_seconds,
                "pushed event" if write.reaction_source == EVENT else "poll",
            )

    async def removed(self, *, spec: RolloutSpec) -> None:
        rollout_logger(self._logger, spec).info("no longer managed (document gone); the alias is left as it is")


class MetricsSink:
    """Feeds ``Metrics`` from the engine's status-sink calls (status, event, reconcile, alias write, removed).

    The engine reports statuses, not transitions: a transition is a status whose phase differs from
    the previous one, timed by ``clock`` when it is reported. A supersede keeps the phase
    (Progressing), so it is taken from its ``Event`` instead.
    """

    SUPERSEDED = "Superseded"

    def __init__(self, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self._clock = clock
        self._phases: dict[str, Phase] = {}

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        self.metrics.rollout_status(spec, status, strategy=strategy_label(spec.strategy))
        self._phases[spec.key] = status.phase
        if previous is not None and previous.phase != status.phase:
            self.metrics.rollout_event(
                spec,
                from_phase=previous.phase,
                to_phase=status.phase,
                reason=status.reason,
                now=self._clock(),
                promotion=promotion_kind(status),
            )

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        if event.reason == Reason.DRIFT_REVERTED:
            self.metrics.drift_was_reverted(spec)
        phase = self._phases.get(spec.key)
        if event.reason == self.SUPERSEDED and phase is not None:
            self.metrics.rollout_event(spec, from_phase=phase, to_phase=phase, reason=event.reason, now=self._clock())

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        self.metrics.reconcile_finished(spec, seconds=report.seconds, error=report.error)
        if report.alarm_states:
            self.metrics.alarm_states(spec, report.alarm_states)

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        self.metrics.alias_written(spec, rollback=write.rollback)
        if write.reaction_seconds is not None:
            self.metrics.rollback_reaction(spec, seconds=write.reaction_seconds, source=write.reaction_source or POLL)

    async def removed(self, *, spec: RolloutSpec) -> None:
        self._phases.pop(spec.key, None)
        self.metrics.rollout_removed(spec)


class AnnouncingSink:
    """Tells the notifications what is never written down: a rollout turning Invalid or Orphaned."""

    def __init__(self, announcer: Announcer) -> None:
        self._announcer = announcer

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        self._announcer.tell(spec, status, previous)

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        return

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        return

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        return

    async def removed(self, *, spec: RolloutSpec) -> None:
        return


class FanoutSink:
    """Several sinks behind one: a failing output is logged and never breaks the reconcile."""

    def __init__(self, sinks: Iterable[StatusSink]) -> None:
        self._sinks = list(sinks)
        self._logger = logging.getLogger("controller.runtime.sink")

    def add(self, sink: StatusSink) -> None:
        self._sinks.append(sink)

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        for sink in self._sinks:
            try:
                await sink.status_changed(spec=spec, status=status, previous=previous)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        for sink in self._sinks:
            try:
                await sink.event(spec=spec, event=event)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        for sink in self._sinks:
            try:
                await sink.reconciled(spec=spec, report=report)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        for sink in self._sinks:
            try:
                await sink.alias_written(spec=spec, write=write)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def removed(self, *, spec: RolloutSpec) -> None:
        for sink in self._sinks:
            try:
                await sink.removed(spec=spec)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)
