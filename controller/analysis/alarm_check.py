"""Alarm events against polls: a watched alarm one of them saw in ALARM and the other did not is a mismatch.

Push mode acts on an event at once and polling stays as the safety net. When the two disagree beyond
``tolerance``, something between CloudWatch and the controller is wrong, and a person should know:

- ``event_only``: an event said a watched alarm was in ALARM at instant t (it entered or left ALARM
  then), and no poll agreed within the tolerance: neither ``DescribeAlarms`` (the alarm in ALARM at a
  poll after t) nor the alarm history (a transition into or out of ALARM at t or later). A message
  that did not come from CloudWatch, or a history that lags.
- ``poll_only``: the alarm history has a watched alarm entering or leaving ALARM at t, the consumer
  was consuming since before t, and no event for it at t or later arrived within the tolerance: the
  rule does not match the alarm, the queue policy drops EventBridge's messages, or delivery is late.

Both sides are compared per alarm on "this instant or a later one", because the history read is one
call per tick that keeps each alarm's latest transition only (``CloudWatchAdapter.recent_alarm_transitions``):
an event for the ALARM at t1 agrees with a history whose latest item is the OK at t2 > t1. Each
mismatch is logged at WARNING once and handed to ``on_mismatch`` (the daemon counts it in a metric).

Only what can be told is judged: an event older than the first history read cannot be checked
against the history, and no event is expected for a transition unless the consumer was consuming
from before it until the tolerance ran out. ``SKEW`` allows for the two instants of one transition
(and the clocks of CloudWatch and the controller) being a little apart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

__all__ = ["SKEW", "TOLERANCE", "CrossCheck", "Mismatch", "MismatchKind"]

logger = logging.getLogger("controller.analysis.alarm_check")

#: How far apart two sightings of one transition may be (seconds): event and history instants, clocks.
SKEW = 1.0
#: How long one side may lag the other before it is a mismatch: EventBridge delivers within seconds,
#: and the history is read once a tick, so a minute tells a fault from a delay at any usual interval.
TOLERANCE = 60.0


class MismatchKind(StrEnum):
    EVENT_ONLY = "event_only"
    POLL_ONLY = "poll_only"


@dataclass(frozen=True)
class Mismatch:
    """A watched alarm one side saw in ALARM at ``at`` (CloudWatch's clock) and the other did not."""

    kind: MismatchKind
    alarm: str
    at: float


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CrossCheck:
    """Compares what the events said with what the polls saw (see the module docstring).

    ``event`` is told each ALARM instant an event carried, ``polled`` what each poll saw, and
    ``consuming`` when the consumer starts or stops consuming. Mismatches are judged at each poll.
    """

    def __init__(self, *, tolerance: float = TOLERANCE, on_mismatch: Callable[[Mismatch], None] | None = None) -> None:
        self._tolerance = tolerance
        self._on_mismatch = on_mismatch
        # Instants an event gave and no poll confirmed yet; instants the history gave and no event yet.
        self._events: dict[str, list[float]] = {}
        self._polls: dict[str, float] = {}
        # Per alarm, the latest ALARM instant each side knows (what a new sighting of the other is held to).
        self._heard: dict[str, float] = {}
        self._seen: dict[str, float] = {}
        # The span the history reads covered: from where the first began to when the last one began (each
        # read begins a little before the previous one did, so the span has no hole while reads succeed).
        self._covered_from: float | None = None
        self._covered_until: float | None = None
        self._consuming_since: float | None = None

    def consuming(self, since: float | None) -> None:
        """The consumer consumes since ``since`` (its clock), or stopped (None): nothing is owed meanwhile."""
        if since is None:
            self._polls.clear()
            self._consuming_since = None
        elif self._consuming_since is None:
            self._consuming_since = since

    def event(self, alarm: str, at: float) -> None:
        """An event said ``alarm`` was in ALARM at ``at`` (it entered ALARM, or left it, then)."""
        self._heard[alarm] = max(at, self._heard.get(alarm, at))
        owed = self._polls.get(alarm)
        if owed is not None and at >= owed - SKEW:
            del self._polls[alarm]
        if self._seen.get(alarm, float("-inf")) < at - SKEW:
            self._events.setdefault(alarm, []).append(at)

    def polled(
        self,
        *,
        started: float,
        firing: frozenset[str],
        transitions: Mapping[str, float] | None = None,
        covered_from: float | None = None,
    ) -> None:
        """One poll, begun at ``started``: the watched alarms in ALARM then, and (when the history was
        read, from ``covered_from`` on) each watched alarm's latest transition into or out of ALARM."""
        seen = {alarm: started for alarm in firing}
        for alarm, at in (transitions or {}).items():
            seen[alarm] = max(at, seen.get(alarm, at))
            consuming = self._consuming_since
            heard = self._heard.get(alarm, float("-inf"))
            if consuming is not None and consuming <= at and heard < at - SKEW and at > self._polls.get(alarm, at - 1):
                self._polls[alarm] = at
        for alarm, at in seen.items():
            self._seen[alarm] = max(at, self._seen.get(alarm, at))
            waiting = [t for t in self._events.get(alarm, ()) if t > at + SKEW]
            if waiting:
                self._events[alarm] = waiting
            else:
                self._events.pop(alarm, None)
        if transitions is not None:
            if self._covered_from is None:
                self._covered_from = covered_from if covered_from is not None else started
            self._covered_until = started
        self._judge(started)

    def _covered(self, at: float) -> bool:
        """A history read that began after ``at`` looked at ``at``: had it been a transition, it would have said."""
        start, end = self._covered_from, self._covered_until
        return start is not None and end is not None and start - SKEW <= at <= end - SKEW

    def _judge(self, now: float) -> None:
        due = now - self._tolerance
        for alarm, instants in list(self._events.items()):
            kept: list[float] = []
            for at in instants:
                if at > due:
                    kept.append(at)
                elif self._covered(at):
                    self._report(Mismatch(MismatchKind.EVENT_ONLY, alarm, at))
                elif at > due - self._tolerance:
                    kept.append(at)  # the history has not been read past it yet (failing reads): wait a while
                # else: no history read ever looked at it; nothing can be told
            if kept:
                self._events[alarm] = kept
            else:
                del self._events[alarm]
        for alarm, at in list(self._polls.items()):
            if at <= due:
                del self._polls[alarm]
                self._report(Mismatch(MismatchKind.POLL_ONLY, alarm, at))

    def _report(self, mismatch: Mismatch) -> None:
        seconds = f"{self._tolerance:g} s"
        if mismatch.kind is MismatchKind.EVENT_ONLY:
            logger.warning(
                "alarm %s: an alarm event said it was in ALARM at %s, and no poll saw it within %s "
                "(neither DescribeAlarms nor the alarm history); was the message CloudWatch's?",
                mismatch.alarm,
                _when(mismatch.at),
                seconds,
            )
        else:
            logger.warning(
                "alarm %s: the alarm history has it entering or leaving ALARM at %s, and no alarm event "
                "for it arrived within %s: check the EventBridge rule's pattern and target, and the "
                "queue's policy; polling caught it",
                mismatch.alarm,
                _when(mismatch.at),
                seconds,
            )
        if self._on_mismatch is not None:
            self._on_mismatch(mismatch)
