"""DescribeAlarmHistory: an item for every configuration change and transition, filtered and paged like AWS."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from controller.emulator import Emulator


@pytest.fixture
def cw(aws: Emulator) -> Iterator[Any]:
    aws.configure(alarm_evaluation=False)  # only the test moves the alarms
    yield aws.client("cloudwatch")


def alarm(cw: Any, name: str, **overrides: Any) -> None:
    params: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": "Shop/Checkout",
        "MetricName": "Errors",
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    cw.put_metric_alarm(**(params | overrides))


def history(cw: Any, **params: Any) -> list[dict[str, Any]]:
    return list(cw.describe_alarm_history(**params)["AlarmHistoryItems"])


def test_every_transition_and_configuration_change_leaves_an_item(aws: Emulator, cw: Any) -> None:
    alarm(cw, "errors", TreatMissingData="breaching")
    alarm(cw, "errors", TreatMissingData="breaching", Threshold=5.0)
    aws.evaluate_alarms()  # evaluation: INSUFFICIENT_DATA -> ALARM
    cw.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="by hand")  # SetAlarmState
    cw.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="again")  # no transition: no item
    items = history(cw, AlarmName="errors", ScanBy="TimestampAscending")
    assert [(i["HistoryItemType"], i["HistorySummary"]) for i in items] == [
        ("ConfigurationUpdate", 'Alarm "errors" created'),
        ("ConfigurationUpdate", 'Alarm "errors" updated'),
        ("StateUpdate", "Alarm updated from INSUFFICIENT_DATA to ALARM"),
        ("StateUpdate", "Alarm updated from ALARM to OK"),
    ]
    assert all(i["AlarmName"] == "errors" and i["AlarmType"] == "MetricAlarm" for i in items)
    created, updated = (json.loads(i["HistoryData"]) for i in items[:2])
    assert created["type"] == "Create" and created["createdAlarm"]["threshold"] == 1.0
    assert updated["type"] == "Update"
    assert (updated["originalAlarm"]["threshold"], updated["updatedAlarm"]["threshold"]) == (1.0, 5.0)
    evaluated = json.loads(items[2]["HistoryData"])
    assert evaluated["version"] == "1.0"
    assert evaluated["oldState"] == {
        "stateValue": "INSUFFICIENT_DATA",
        "stateReason": "Unchecked: Initial alarm creation",
    }
    assert evaluated["newState"]["stateValue"] == "ALARM"
    assert evaluated["newState"]["stateReason"].startswith("Threshold Crossed")
    assert evaluated["newState"]["stateReasonData"]["period"] == 60  # an object, not a JSON string
    by_hand = json.loads(items[3]["HistoryData"])
    assert by_hand["oldState"]["stateValue"] == "ALARM"
    assert by_hand["newState"] == {"stateValue": "OK", "stateReason": "by hand"}
    state = cw.describe_alarms(AlarmNames=["errors"])["MetricAlarms"][0]
    assert items[3]["Timestamp"] == state["StateTransitionedTimestamp"]


def test_composite_transitions_are_composite_items(aws: Emulator, cw: Any) -> None:
    alarm(cw, "child", TreatMissingData="notBreaching")
    aws.evaluate_alarms()
    cw.put_composite_alarm(AlarmName="gate", AlarmRule="ALARM(child)")
    cw.set_alarm_state(AlarmName="child", StateValue="ALARM", StateReason="by hand")
    assert history(cw, AlarmName="gate") == []  # AlarmTypes defaults to metric alarms only
    items = history(cw, AlarmName="gate", AlarmTypes=["CompositeAlarm"], ScanBy="TimestampAscending")
    assert [(i["AlarmType"], i["HistorySummary"]) for i in items] == [
        ("CompositeAlarm", 'Alarm "gate" created'),
        ("CompositeAlarm", "Alarm updated from INSUFFICIENT_DATA to OK"),
        ("CompositeAlarm", "Alarm updated from OK to ALARM"),
    ]
    reason = json.loads(items[-1]["HistoryData"])["newState"]["stateReasonData"]
    assert reason["triggeringAlarms"][0]["arn"].endswith(":alarm:child")


def test_filters_order_and_deleted_alarms(aws: Emulator, cw: Any) -> None:
    alarm(cw, "a", TreatMissingData="breaching")
    alarm(cw, "b", TreatMissingData="notBreaching")
    aws.evaluate_alarms()
    middle = datetime.now(UTC)
    time.sleep(0.01)
    cw.set_alarm_state(AlarmName="a", StateValue="OK", StateReason="by hand")
    cw.delete_alarms(AlarmNames=["b"])
    newest_first = history(cw)
    assert [i["Timestamp"] for i in newest_first] == sorted((i["Timestamp"] for i in newest_first), reverse=True)
    assert newest_first[0]["HistorySummary"] == 'Alarm "b" deleted'
    assert json.loads(newest_first[0]["HistoryData"])["type"] == "Delete"
    oldest_first = history(cw, ScanBy="TimestampAscending")
    assert oldest_first == list(reversed(newest_first))
    assert {i["AlarmName"] for i in history(cw, AlarmName="b")} == {"b"}  # kept after the deletion
    states = history(cw, HistoryItemType="StateUpdate", ScanBy="TimestampAscending")
    assert [(i["AlarmName"], i["HistorySummary"]) for i in states] == [
        ("a", "Alarm updated from INSUFFICIENT_DATA to ALARM"),
        ("b", "Alarm updated from INSUFFICIENT_DATA to OK"),
        ("a", "Alarm updated from ALARM to OK"),
    ]
    later = history(cw, StartDate=middle, HistoryItemType="StateUpdate")
    assert [i["HistorySummary"] for i in later] == ["Alarm updated from ALARM to OK"]
    earlier = history(cw, EndDate=middle, AlarmName="a")
    assert [i["HistorySummary"] for i in earlier] == [
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        'Alarm "a" created',
    ]
    assert history(cw, StartDate=middle + timedelta(hours=1)) == []


def test_pages_with_max_records_and_next_token_in_both_orders(cw: Any) -> None:
    for index in range(7):
        alarm(cw, f"a{index}")
    for order in ("TimestampDescending", "TimestampAscending"):
        everything = history(cw, ScanBy=order)
        first = cw.describe_alarm_history(ScanBy=order, MaxRecords=3)
        second = cw.describe_alarm_history(ScanBy=order, MaxRecords=3, NextToken=first["NextToken"])
        last = cw.describe_alarm_history(ScanBy=order, MaxRecords=3, NextToken=second["NextToken"])
        pages = [first, second, last]
        assert [len(p["AlarmHistoryItems"]) for p in pages] == [3, 3, 1] and "NextToken" not in last
        assert [i for p in pages for i in p["AlarmHistoryItems"]] == everything
    paged = cw.get_paginator("describe_alarm_history").paginate(PaginationConfig={"PageSize": 2})
    assert [i["AlarmName"] for page in paged for i in page["AlarmHistoryItems"]] == [f"a{i}" for i in range(6, -1, -1)]


def test_default_page_is_100(cw: Any) -> None:
    for index in range(105):
        alarm(cw, f"a{index:03d}")
    first = cw.describe_alarm_history()
    assert len(first["AlarmHistoryItems"]) == 100 and first["NextToken"]


def test_bad_values_are_refused_as_cloudwatch_refuses_them(aws: Emulator, cw: Any) -> None:
    raw = aws.client("cloudwatch", config=Config(parameter_validation=False))
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"MaxRecords": 0}, "ValidationError", "maxRecords"),
        ({"MaxRecords": 101}, "ValidationError", "maxRecords"),
        ({"HistoryItemType": "Everything"}, "ValidationError", "historyItemType"),
        ({"ScanBy": "Sideways"}, "ValidationError", "scanBy"),
        ({"AlarmTypes": ["Metric"]}, "ValidationError", "alarmTypes"),
        ({"NextToken": "not-a-token"}, "InvalidNextToken", ""),
    ]
    for params, code, member in cases:
        with pytest.raises(ClientError) as exc:
            raw.describe_alarm_history(**params)
        error = exc.value.response["Error"]
        assert error["Code"] == code, params
        assert member in error["Message"]
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
