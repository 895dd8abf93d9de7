"""CloudWatch alarm reads, batched so the cost per tick does not grow with the number of rollouts.

One question per tick for ALL rollouts: "which alarms are in ALARM right now?" (``DescribeAlarms``
with ``StateValue=ALARM``, paginated). Each rollout then checks its own alarm names against that set
in memory. Existence checks (pre-flight: does every alarm a rollout names exist?) batch up to 100
names per call, the API's limit. Both count against the DescribeAlarms budget family (AWS: 9 TPS).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.aws.calls import ApiCaller

__all__ = ["DESCRIBE_ALARMS", "CloudWatchAdapter"]

DESCRIBE_ALARMS = "cloudwatch.describe_alarms"
#: DescribeAlarms takes at most 100 alarm names and returns at most 100 records per page.
BATCH = 100
_ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]


def _states(response: dict[str, Any]) -> dict[str, str]:
    """``{alarm name: StateValue}`` of one DescribeAlarms page, metric and composite alarms alike."""
    found: dict[str, str] = {}
    for key in ("MetricAlarms", "CompositeAlarms"):
        for alarm in response.get(key) or []:
            found[str(alarm["AlarmName"])] = str(alarm.get("StateValue", ""))
    return found


class CloudWatchAdapter:
    """Async, batched alarm reads."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def _describe(self, **params: Any) -> dict[str, str]:
        found: dict[str, str] = {}
        token: str | None = None
        while True:
            page = dict(params)
            if token:
                page["NextToken"] = token
            response = await self._caller.call(
                "DescribeAlarms", family=DESCRIBE_ALARMS, AlarmTypes=_ALARM_TYPES, MaxRecords=BATCH, **page
            )
            found.update(_states(response))
            token = response.get("NextToken")
            if not token:
                return found

    async def alarms_in_alarm(self) -> frozenset[str]:
        """Names of every metric and composite alarm in the account/region currently in ALARM."""
        return frozenset(await self._describe(StateValue="ALARM"))

    async def alarm_states(self, names: Iterable[str]) -> dict[str, str]:
        """``{name: OK | ALARM | INSUFFICIENT_DATA}`` of those of ``names`` that exist, 100 names per call.

        For the live view of one rollout: its few watched alarms in one call per refresh.
        """
        wanted = sorted(set(names))
        states: dict[str, str] = {}
        for start in range(0, len(wanted), BATCH):
            states.update(await self._describe(AlarmNames=wanted[start : start + BATCH]))
        return states

    async def missing_alarms(self, names: Iterable[str]) -> frozenset[str]:
        """Those of ``names`` that do not exist, asked 100 names per call (no call for no names)."""
        wanted = set(names)
        return frozenset(wanted - set(await self.alarm_states(wanted)))
