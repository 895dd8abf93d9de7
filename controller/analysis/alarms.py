"""CloudWatch alarms as an analysis provider: which watched alarms are in ALARM, which were since their
rollout's attempt began, and which do not exist.

Its cost does not grow with the number of rollouts: ONE paginated ``DescribeAlarms`` with
``StateValue=ALARM`` per tick answers "which alarms fire" for every rollout at once (an idle rollout
costs no alarm call of its own), and whether the alarms a rollout watches exist at all is checked
only when its alarm list changed, or while some of them are missing (they may have been created
since), batched 100 names per call for all rollouts of the tick.

**No missed transition.** An alarm that goes to ALARM and back to OK between two polls is never in
ALARM when ``DescribeAlarms`` asks, yet it was while a canary had traffic. Each watched alarm's
latest known ALARM instant (it entered or left ALARM then) is kept and handed to the core
(``Evidence.alarm_instants``), which counts it from the attempt's start on
(``controller.core.context.alarms_count_since``). The instants come from two places:

- the account's alarm history since the previous read (``DescribeAlarmHistory``,
  ``HistoryItemType=StateUpdate``), read while some attempt is in flight (or for the cross-check
  below), at most once per ``history_every`` seconds (the tick interval: a tick started early by an
  event, a hook's answer or a request does not read it again), from ``overlap`` seconds before the
  previous read began (clock skew, and the history's own delay; an item seen twice changes nothing);
  the first read after start-up, or after a time with nothing in flight, reaches back to the
  earliest attempt in flight (at most ``lookback``), so a restart misses nothing either;
- pushed alarm events (``--alarm-events``, ``pushed``): at once.

Why the history and not each alarm's ``StateTransitionedTimestamp`` (which ``DescribeAlarms`` by name
returns), per tick: the history is one call whatever the number of watched alarms (more pages only
beyond 100 transitions of the account per interval), on a quota of its own (3 TPS), beside the one
``StateValue=ALARM`` call; reading the timestamps means naming every watched alarm, 100 a call (10
calls at 1,000 alarms, on the DescribeAlarms quota of 9 TPS that rollbacks need), and still cannot
tell OK -> ALARM -> OK from OK -> INSUFFICIENT_DATA -> OK (only the last transition's time is
there), so the history would be needed anyway. Cheaper only below 100 watched alarms, by one call on
another quota, and wrong: the history is read.

A history that cannot be read (permission missing after an upgrade, throttled) is said once at
WARNING and retried at the next read; the tick goes on, since alarm states (the one read no rollout
may progress without) are still known. The next read that succeeds begins where the last good one
ended, so nothing is skipped (within ``lookback``).

**Pushed events** (``pushed``): an event that a watched alarm went to ALARM marks it in ALARM at
once (``firing``), and holds until a poll begun ``OVERLAY_HOLD`` seconds after the event's instant
has seen the alarm, so a poll already under way, or a ``DescribeAlarms`` that lags, cannot un-see it;
an event that it left ALARM ends that earlier. Either way the instant goes into ``alarm_instants``.
A ``CrossCheck`` (``checker``), when set, is told both streams and reports where they disagree.

It raises when the states cannot be read: no rollout may progress without knowing its alarms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from controller.analysis import Evidence, Subject
from controller.analysis.alarm_check import CrossCheck
from controller.analysis.alarm_events import ALARM, AlarmChange
from controller.aws.cloudwatch import CloudWatchAdapter
from controller.aws.errors import AwsError
from controller.core.context import alarms_count_since

logger = logging.getLogger("controller.analysis.alarms")

#: The history is read from this long before the previous read began: clock skew between the
#: controller and CloudWatch, and the history's own delay, must not hide an item.
HISTORY_OVERLAP = 30.0
#: The first history read after start-up reaches back to the earliest attempt in flight, at most this far.
HISTORY_LOOKBACK = 3600.0
#: An event's ALARM holds until a poll begun this long after the event's instant has seen the alarm.
OVERLAY_HOLD = 5.0


@dataclass(frozen=True)
class _History:
    """One history read: each alarm's latest transition into or out of ALARM, from ``since`` on."""

    transitions: Mapping[str, float]
    since: float


class AlarmsProvider:
    """Alarm states, ALARM instants and existence for every subject that watches alarms."""

    def __init__(
        self,
        cloudwatch: CloudWatchAdapter,
        *,
        history_every: float = 0.0,
        overlap: float = HISTORY_OVERLAP,
        lookback: float = HISTORY_LOOKBACK,
    ) -> None:
        self._cloudwatch = cloudwatch
        self._every = history_every
        self._overlap = overlap
        self._lookback = lookback
        # rollout key -> the alarm names last checked for existence; and every name found missing.
        self._checked: dict[str, tuple[str, ...]] = {}
        self._missing: set[str] = set()
        # Watched alarm -> the latest instant it is known to have been in ALARM (CloudWatch's clock).
        self._instants: dict[str, float] = {}
        # Watched alarm -> the instant an event said it went to ALARM, until a poll has seen it since.
        self._pushed: dict[str, float] = {}
        # Watched alarm -> the newest transition an event told of (an older ALARM is no longer "now").
        self._newest: dict[str, float] = {}
        # When the last history read that succeeded began, and when one was last tried.
        self._history_at: float | None = None
        self._history_tried: float | None = None
        self._history_error: str | None = None
        # Told what the polls saw and what the events said (push mode: the daemon sets it).
        self.checker: CrossCheck | None = None

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        watching = [s for s in subjects if s.spec.analysis.alarms]
        if not watching:
            return {}
        watched = frozenset(name for s in watching for name in s.spec.analysis.alarms)
        polled, history = await asyncio.gather(self._cloudwatch.alarms_in_alarm(), self._read_history(watching, now))
        seen = {name: at for name, at in history.transitions.items() if name in watched} if history else {}
        for name, at in seen.items():
            self._remember(name, at)
        # A poll begun long enough after an event's ALARM has seen the alarm since: it speaks for it now.
        self._pushed = {name: at for name, at in self._pushed.items() if now < at + OVERLAY_HOLD}
        self._keep(watched)
        if self.checker is not None:
            self.checker.polled(
                started=now,
                firing=polled & watched,
                transitions=seen if history is not None else None,
                covered_from=history.since if history is not None else None,
            )
        firing = polled | frozenset(self._pushed)
        await self._check_existence(watching)
        return {s.spec.key: self._evidence(s, firing) for s in watching}

    def _evidence(self, subject: Subject, firing: frozenset[str]) -> Evidence:
        alarms = frozenset(subject.spec.analysis.alarms)
        since = alarms_count_since(subject.record) if subject.record is not None else None
        # Only the instants that count for the attempt in flight: an older one would wake the rollout
        # for nothing on every change, and a rollout with nothing in flight has no use for any.
        instants: dict[str, float] = {}
        if since is not None:
            instants = {name: at for name in alarms if (at := self._instants.get(name, since - 1)) >= since}
        return Evidence(firing=alarms & firing, missing_alarms=alarms & self._missing, alarm_instants=instants)

    def pushed(self, change: AlarmChange) -> bool:
        """An alarm state change an event delivered; True when it tells something new about ALARM.

        ALARM now: the alarm fires from this instant until a poll has seen it since (``OVERLAY_HOLD``).
        Out of ALARM (its previous state was ALARM): in ALARM until then. Either way that instant
        counts for the attempts in flight, even if the alarm is OK again by the next poll.
        """
        name, at = change.name, change.at
        news = False
        if ALARM in (change.state, change.previous):
            news = at > self._instants.get(name, float("-inf"))
            self._remember(name, at)
            if self.checker is not None:
                self.checker.event(name, at)
        newest = self._newest.get(name, at)
        if change.state == ALARM and at >= newest:
            news = news or name not in self._pushed
            self._pushed[name] = at
        elif at >= newest:
            self._pushed.pop(name, None)  # a newer change: it is out of ALARM since
        self._newest[name] = max(at, newest)
        return news

    def _remember(self, name: str, at: float) -> None:
        if at > self._instants.get(name, float("-inf")):
            self._instants[name] = at

    def _keep(self, watched: frozenset[str]) -> None:
        """Forget what is known of alarms no rollout watches any more."""
        for known in (self._instants, self._pushed, self._newest):
            for name in [name for name in known if name not in watched]:
                del known[name]

    async def _read_history(self, watching: Sequence[Subject], now: float) -> _History | None:
        """The history since the last read (None: not due this tick, of no use, or unreadable: said once).

        Of use while an attempt is in flight (its ALARM instants count), or to the cross-check.
        """
        starts = [alarms_count_since(s.record) for s in watching if s.record is not None]
        in_flight = [at for at in starts if at is not None]
        if not in_flight and self.checker is None:
            return None
        if self._history_tried is not None and now - self._history_tried < self._every:
            return None
        self._history_tried = now
        earliest = min(in_flight, default=now)
        last = self._history_at
        if last is not None and (earliest <= last or self.checker is not None):
            since = last - self._overlap  # on from the last read: nothing between the two is skipped
        else:
            since = max(earliest, now - self._lookback) - self._overlap
        try:
            transitions = await self._cloudwatch.recent_alarm_transitions(since)
        except AwsError as error:
            reason = f"{error.code}: {error.message}"
            if reason != self._history_error:
                logger.warning(
                    "cannot read the alarm history (%s); an alarm that goes to ALARM and back between two "
                    "polls may be missed until it is readable again (see docs/iam.md)",
                    reason,
                )
            self._history_error = reason
            return None
        if self._history_error is not None:
            logger.info("the alarm history is readable again")
            self._history_error = None
        self._history_at = now
        return _History(transitions=transitions, since=since)

    async def _check_existence(self, subjects: Sequence[Subject]) -> None:
        todo = [s.spec for s in subjects if self._needs_check(s.spec.key, tuple(s.spec.analysis.alarms))]
        names = {name for spec in todo for name in spec.analysis.alarms}
        if not names:
            return
        missing = await self._cloudwatch.missing_alarms(sorted(names))
        self._missing = (self._missing - names) | set(missing)
        for spec in todo:
            self._checked[spec.key] = tuple(spec.analysis.alarms)

    def _needs_check(self, key: str, alarms: tuple[str, ...]) -> bool:
        return self._checked.get(key) != alarms or any(name in self._missing for name in alarms)

    def forget(self, key: str) -> None:
        """The rollout is no longer managed."""
        self._checked.pop(key, None)


__all__ = ["HISTORY_LOOKBACK", "HISTORY_OVERLAP", "OVERLAY_HOLD", "AlarmsProvider"]
