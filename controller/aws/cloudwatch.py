"""CloudWatch alarm reads, batched so the cost per tick does not grow with the number of rollouts.

One question per tick for ALL rollouts: "which alarms are in ALARM right now?" (``DescribeAlarms``
with ``StateValue=ALARM``, paginated). Each rollout then checks its own alarm names against that set
in memory. Existence checks (pre-flight: does every alarm a rollout names exist?) batch up to 100
names per call, the API's limit. Both count against the DescribeAlarms budget family (AWS: 9 TPS).

Metric analysis reads datapoints with ``GetMetricData``: every query due in a tick, for all rollouts,
goes out in one call (AWS takes up to 500 queries a call; more calls only beyond that), under its own
budget family (AWS: 50 TPS).

"Was any watched alarm in ALARM at some instant since the last poll?" (an ALARM that is OK again by
the next poll must still roll a canary back) is answered from the alarm history: one
``DescribeAlarmHistory`` for the whole account (``HistoryItemType=StateUpdate``, ``StartDate`` = the
last poll, 100 items a page), because each item names the state left and the state entered. The
alternative, reading every watched alarm's ``StateTransitionedTimestamp`` with ``DescribeAlarms``,
costs 10 calls a tick at 1,000 watched alarms (100 names a call) and still cannot tell an
OK -> ALARM -> OK from an OK -> INSUFFICIENT_DATA -> OK; the history costs one call a tick until more
than 100 alarms of the account change state within one interval. Its own budget family (AWS: 3 TPS,
not adjustable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from controller.aws.calls import ApiCaller

__all__ = [
    "DESCRIBE_ALARMS",
    "DESCRIBE_ALARM_HISTORY",
    "GET_METRIC_DATA",
    "MAX_QUERIES",
    "CloudWatchAdapter",
    "alarm_left_or_entered",
    "pack",
]

DESCRIBE_ALARMS = "cloudwatch.describe_alarms"
DESCRIBE_ALARM_HISTORY = "cloudwatch.describe_alarm_history"
GET_METRIC_DATA = "cloudwatch.get_metric_data"
#: GetMetricData takes at most 500 queries (metric statistics and expressions alike) a call.
MAX_QUERIES = 500
Query = Mapping[str, Any]
#: Query id -> {datapoint timestamp (epoch seconds): value}.
Series = dict[str, dict[float, float]]
#: DescribeAlarms takes at most 100 alarm names and returns at most 100 records per page.
BATCH = 100
_ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]
ALARM = "ALARM"
# "Alarm updated from OK to ALARM": what a history item says when its HistoryData cannot be read.
_SUMMARY = re.compile(r"from (\w+) to (\w+)")


def pack(groups: Sequence[Sequence[Query]], *, limit: int = MAX_QUERIES) -> list[list[Query]]:
    """Groups of queries packed, in order, into as few calls of at most ``limit`` queries as possible
    without splitting a group (an expression and its inputs must be in the same call)."""
    calls: list[list[Query]] = []
    for group in groups:
        if len(group) > limit:
            raise ValueError(f"a group of {len(group)} queries does not fit in one GetMetricData call")
        if not calls or len(calls[-1]) + len(group) > limit:
            calls.append([])
        calls[-1].extend(group)
    return calls


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _states(response: dict[str, Any]) -> dict[str, str]:
    """``{alarm name: StateValue}`` of one DescribeAlarms page, metric and composite alarms alike."""
    found: dict[str, str] = {}
    for key in ("MetricAlarms", "CompositeAlarms"):
        for alarm in response.get(key) or []:
            found[str(alarm["AlarmName"])] = str(alarm.get("StateValue", ""))
    return found


def alarm_left_or_entered(item: Mapping[str, Any]) -> bool:
    """Whether a ``StateUpdate`` history item is a transition into or out of ALARM.

    Either way the alarm was in ALARM at the item's instant (entering) or until it (leaving).
    ``HistoryData`` names both states (``oldState`` / ``newState``); its summary says the same in words.
    """
    try:
        data = json.loads(str(item.get("HistoryData") or ""))
        states = {str(data["oldState"]["stateValue"]), str(data["newState"]["stateValue"])}
    except (ValueError, KeyError, TypeError):
        found = _SUMMARY.search(str(item.get("HistorySummary") or ""))
        states = set(found.groups()) if found else set()
    return ALARM in states


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

    async def recent_alarm_transitions(self, since: float) -> dict[str, float]:
        """Every alarm of the account/region that went into or out of ALARM at or after ``since`` (epoch
        seconds), with the latest such instant: ``{name: epoch seconds}``.

        Those alarms were in ALARM at some instant since ``since``, even if they are OK again now; with
        ``alarms_in_alarm()`` (in ALARM now, possibly since long before) that is every alarm in ALARM at
        any instant since ``since``. One ``DescribeAlarmHistory`` a call, more pages only when more than
        100 alarm state changes of the account happened since ``since``. The history is stamped by AWS's
        clock: pass a ``since`` a little before the last poll to allow for clock skew (an item seen twice
        changes nothing).
        """
        found: dict[str, float] = {}
        token: str | None = None
        while True:
            page: dict[str, Any] = {"NextToken": token} if token else {}
            response = await self._caller.call(
                "DescribeAlarmHistory",
                family=DESCRIBE_ALARM_HISTORY,
                AlarmTypes=_ALARM_TYPES,
                HistoryItemType="StateUpdate",
                StartDate=_stamp(since),
                MaxRecords=BATCH,
                **page,
            )
            for item in response.get("AlarmHistoryItems") or []:
                if alarm_left_or_entered(item):
                    name, at = str(item["AlarmName"]), item["Timestamp"].timestamp()
                    found[name] = max(at, found.get(name, at))
            token = response.get("NextToken")
            if not token:
                return found

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

    async def get_metric_data(self, groups: Sequence[Sequence[Query]], *, start: float, end: float) -> Series:
        """Datapoints of every query (by Id) between ``start`` and ``end`` (epoch seconds), in as few
        ``GetMetricData`` calls as 500 queries each allow (pages followed with NextToken)."""
        found: Series = {}
        for queries in pack(groups):
            token: str | None = None
            while True:
                page: dict[str, Any] = {"NextToken": token} if token else {}
                response = await self._caller.call(
                    "GetMetricData",
                    family=GET_METRIC_DATA,
                    MetricDataQueries=list(queries),
                    StartTime=_stamp(start),
                    EndTime=_stamp(end),
                    ScanBy="TimestampDescending",
                    **page,
                )
                for result in response.get("MetricDataResults") or []:
                    series = found.setdefault(str(result["Id"]), {})
                    for at, value in zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False):
                        series[at.timestamp()] = float(value)
                token = response.get("NextToken")
                if not token:
                    break
        return found
