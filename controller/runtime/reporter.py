"""The engine's reporter: what the engine tells its outputs (``StatusSink`` s), said once.

Every output (the log, Prometheus, Kubernetes ``.status`` and Events) hears the same things through
one ``FanoutSink``: status changes, transition Events, each reconcile's report, each alias write,
a rollout no longer managed. The reporter keeps what saying things once needs:

- a status is passed on only when it changed;
- an ``Event`` identical to the last one passed on for the rollout is dropped unless the decision
  changed the durable record (an Invalid rollout repeats its event on every decide: said once is
  enough);
- the rollback reaction time: from the instant the controller first knew a watched alarm was in
  ALARM (the tick whose read saw it: ``source="poll"``; the arrival of the pushed event that said so:
  ``source="event"``) to the alias write that restored stable after it, reported once per firing.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.analysis import NO_EVIDENCE, Evidence
from controller.core.types import Event, Status, UpdateAlias
from controller.runtime.rollouts import Rollout
from controller.runtime.sink import ALARM, EVENT, MISSING, OK, POLL, AliasWritten, FanoutSink, Reconciled, StatusSink

Clock = Callable[[], float]


class Reporter:
    """Passes what the engine sees on to its sinks (see the module docstring)."""

    def __init__(self, sinks: tuple[StatusSink, ...], *, clock: Clock) -> None:
        self.sink = FanoutSink(sinks)
        self._clock = clock

    async def report(
        self, rollout: Rollout, status: Status, events: tuple[Event, ...] = (), *, record_changed: bool = False
    ) -> None:
        if status != rollout.status:
            previous, rollout.status = rollout.status, status
            await self.sink.status_changed(spec=rollout.spec, status=status, previous=previous)
        for event in events:
            if not record_changed and _same_event(event, rollout.last_event):
                continue  # the core repeats itself on an unchanged record (Invalid): said once is enough
            rollout.last_event = event
            await self.sink.event(spec=rollout.spec, event=event)

    async def reconciled(
        self, rollout: Rollout, *, seconds: float, evidence: Evidence = NO_EVIDENCE, error: str | None = None
    ) -> None:
        """A reconcile ended: how long it took, and its error kind or the watched alarms' states."""
        states = alarm_states(rollout, evidence) if error is None else {}
        await self.sink.reconciled(spec=rollout.spec, report=Reconciled(seconds, error=error, alarm_states=states))

    def saw(self, rollout: Rollout, evidence: Evidence, *, at: float) -> None:
        """Remember when a tick's read first saw a watched alarm in ALARM (now, or during the attempt in
        flight: ``alarm_instants``); forget when none is."""
        if evidence.firing or evidence.alarm_instants:
            self._first_seen(rollout, at=at, source=POLL)
        else:
            rollout.alarm_seen_at = None

    def heard(self, rollout: Rollout, *, at: float) -> None:
        """A pushed event said a watched alarm was in ALARM; it arrived at ``at``."""
        self._first_seen(rollout, at=at, source=EVENT)

    @staticmethod
    def _first_seen(rollout: Rollout, *, at: float, source: str) -> None:
        if rollout.alarm_seen_at is None:
            rollout.alarm_seen_at, rollout.alarm_seen_by, rollout.reaction_reported = at, source, False

    async def alias_written(self, rollout: Rollout | None, action: UpdateAlias) -> None:
        """Report an alias write; the one restoring stable after an alarm carries the reaction time."""
        if rollout is None:
            return
        reaction, source = None, None
        restores = action.rollback and action.write.alias == rollout.spec.alias
        if restores and rollout.alarm_seen_at is not None and not rollout.reaction_reported:
            reaction, source = max(0.0, self._clock() - rollout.alarm_seen_at), rollout.alarm_seen_by
            rollout.reaction_reported = True
        write = AliasWritten(
            alias=action.write.alias, rollback=action.rollback, reaction_seconds=reaction, reaction_source=source
        )
        await self.sink.alias_written(spec=rollout.spec, write=write)


def alarm_states(rollout: Rollout, evidence: Evidence = NO_EVIDENCE) -> dict[str, str]:
    """Watched alarm -> ALARM / OK / MISSING: only alarms in ALARM are read, so OK means "not in ALARM"."""
    return {
        name: ALARM if name in evidence.firing else MISSING if name in evidence.missing_alarms else OK
        for name in rollout.spec.analysis.alarms
    }


def _same_event(event: Event, last: Event | None) -> bool:
    return last is not None and (event.reason, event.message) == (last.reason, last.message)


__all__ = ["Reporter", "alarm_states"]
