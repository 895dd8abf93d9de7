"""CloudWatch alarms as an analysis provider: which watched alarms are in ALARM, and which do not exist.

Its cost does not grow with the number of rollouts: ONE paginated ``DescribeAlarms`` with
``StateValue=ALARM`` per tick answers "which alarms fire" for every rollout at once (an idle rollout
costs no alarm call of its own), and whether the alarms a rollout watches exist at all is checked
only when its alarm list changed, or while some of them are missing (they may have been created
since), batched 100 names per call for all rollouts of the tick.

It raises when the states cannot be read: no rollout may progress without knowing its alarms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.analysis import Evidence, Subject
from controller.aws.cloudwatch import CloudWatchAdapter


class AlarmsProvider:
    """Alarm states and existence for every subject that watches alarms."""

    def __init__(self, cloudwatch: CloudWatchAdapter) -> None:
        self._cloudwatch = cloudwatch
        # rollout key -> the alarm names last checked for existence; and every name found missing.
        self._checked: dict[str, tuple[str, ...]] = {}
        self._missing: set[str] = set()

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        watching = [s for s in subjects if s.spec.analysis.alarms]
        if not watching:
            return {}
        firing = await self._cloudwatch.alarms_in_alarm()
        await self._check_existence(watching)
        return {
            s.spec.key: Evidence(
                firing=frozenset(s.spec.analysis.alarms) & firing,
                missing_alarms=frozenset(s.spec.analysis.alarms) & self._missing,
            )
            for s in watching
        }

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


__all__ = ["AlarmsProvider"]
