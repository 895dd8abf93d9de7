"""Alarms are evaluated like CloudWatch does, and every state change reaches EventBridge."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.emulator import Emulator

DIMS = [{"Name": "FunctionName", "Value": "svc"}, {"Name": "Resource", "Value": "svc:prod"}]


@pytest.fixture
def cw(aws: Emulator) -> Any:
    return aws.client("cloudwatch")


def _alarm(cw: Any, name: str = "errors", **overrides: Any) -> None:
    params: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": "AWS/Lambda",
        "MetricName": "Errors",
        "Dimensions": DIMS,
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    params.update(overrides)
    cw.put_metric_alarm(**params)


def _put(cw: Any, value: float, name: str = "Errors", dims: list[dict[str, str]] = DIMS) -> None:
    cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[{"MetricName": name, "Value": value, "Dimensions": dims}])


def _state(cw: Any, name: str = "errors") -> dict[str, Any]:
    return dict(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0])


def test_new_alarm_is_insufficient_data_then_alarm_then_ok(aws: Emulator, cw: Any) -> None:
    _alarm(cw, TreatMissingData="missing")
    assert _state(cw)["StateValue"] == "INSUFFICIENT_DATA"
    _put(cw, 5)
    alarm = aws.wait_for(lambda: (s := _state(cw))["StateValue"] == "ALARM" and s, timeout=5)
    assert alarm["StateReason"].startswith("Threshold Crossed")
    assert json.loads(alarm["StateReasonData"])["recentDatapoints"] == [5.0]
    assert alarm["StateUpdatedTimestamp"]
    _alarm(cw, Threshold=100.0)  # an update keeps the state, then evaluation moves it
    aws.wait_for(lambda: _state(cw)["StateValue"] == "OK", timeout=5)


def test_dimensions_match_exactly(aws: Emulator, cw: Any) -> None:
    _alarm(cw, TreatMissingData="notBreaching")
    _put(cw, 5, dims=[*DIMS, {"Name": "ExecutedVersion", "Value": "2"}])
    aws.wait_for(lambda: _state(cw)["StateValue"] == "OK", timeout=5)
    aws.evaluate_alarms()
    assert _state(cw)["StateValue"] == "OK"


@pytest.mark.parametrize(
    ("stat", "extended", "threshold", "values", "expected"),
    [
        ("Average", None, 2.5, [1, 2, 6], "ALARM"),
        ("Average", None, 5.0, [1, 2, 6], "OK"),
        ("Maximum", None, 6.0, [1, 2, 6], "ALARM"),
        ("Minimum", None, 1.0, [1, 2, 6], "ALARM"),
        ("SampleCount", None, 4.0, [1, 2, 6], "OK"),
        (None, "p99", 5.0, [1, 2, 6], "ALARM"),
        (None, "p50", 3.0, [1, 2, 6], "OK"),
    ],
)
def test_statistics(
    aws: Emulator, cw: Any, stat: str | None, extended: str | None, threshold: float, values: list[float], expected: str
) -> None:
    extra: dict[str, Any] = {"ExtendedStatistic": extended} if extended else {"Statistic": stat}
    params: dict[str, Any] = {
        "AlarmName": "lat",
        "Namespace": "AWS/Lambda",
        "MetricName": "Duration",
        "Dimensions": DIMS,
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": threshold,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        **extra,
    }
    cw.put_metric_alarm(**params)
    for value in values:
        _put(cw, value, name="Duration")
    aws.evaluate_alarms()
    assert _state(cw, "lat")["StateValue"] == expected


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", "INSUFFICIENT_DATA"), ("notBreaching", "OK"), ("breaching", "ALARM"), ("ignore", "INSUFFICIENT_DATA")],
)
def test_treat_missing_data(aws: Emulator, cw: Any, treat: str, expected: str) -> None:
    _alarm(cw, TreatMissingData=treat)
    aws.evaluate_alarms()
    assert _state(cw)["StateValue"] == expected


def test_datapoints_to_alarm_m_out_of_n(aws: Emulator, cw: Any) -> None:
    _alarm(cw, Period=10, EvaluationPeriods=3, DatapointsToAlarm=2, TreatMissingData="notBreaching")
    _put(cw, 5)
    aws.evaluate_alarms()
    assert _state(cw)["StateValue"] == "OK"  # 1 of 3 breaching, 2 needed
    now = datetime.now(UTC)
    cw.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[{"MetricName": "Errors", "Value": 5, "Dimensions": DIMS, "Timestamp": now - timedelta(seconds=10)}],
    )
    aws.evaluate_alarms()
    assert _state(cw)["StateValue"] == "ALARM"


def test_state_changes_are_published_to_eventbridge(aws: Emulator, cw: Any) -> None:
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="alarms",
        EventPattern=json.dumps({"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}),
    )
    events.put_targets(Rule="alarms", Targets=[{"Id": "q", "Arn": queue_arn}])
    _alarm(cw)
    cw.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="manual")

    def received() -> list[dict[str, Any]]:
        return list(sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []))

    # The evaluator may already have moved the alarm on again (AWS does too): find the ALARM event.
    def alarm_events() -> list[dict[str, Any]]:
        events = [json.loads(message["Body"]) for message in received()]
        return [event for event in events if event["detail"]["state"]["value"] == "ALARM"]

    event = aws.wait_for(alarm_events, timeout=5)[0]
    assert event["source"] == "aws.cloudwatch"
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    detail = event["detail"]
    assert detail["alarmName"] == "errors"
    assert detail["state"]["value"] == "ALARM"
    assert detail["state"]["reason"] == "manual"
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["configuration"]["metrics"][0]["metricStat"]["metric"]["name"] == "Errors"


def test_get_metric_data_percentile_and_math(aws: Emulator, cw: Any) -> None:
    for value in range(1, 101):
        _put(cw, float(value), name="Duration")
    _put(cw, 2, name="Errors")
    for _ in range(4):
        _put(cw, 1, name="Invocations")
    now = datetime.now(UTC)

    def stat(query_id: str, metric: str, stat_name: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": DIMS},
                "Period": 60,
                "Stat": stat_name,
            },
            "ReturnData": False,
        }

    result = cw.get_metric_data(
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        MetricDataQueries=[
            {**stat("p", "Duration", "p99"), "ReturnData": True},
            stat("e", "Errors", "Sum"),
            stat("n", "Invocations", "Sum"),
            {"Id": "rate", "Expression": "e/n*100"},
        ],
    )["MetricDataResults"]
    by_id = {r["Id"]: r for r in result}
    assert set(by_id) == {"p", "rate"}
    assert by_id["p"]["Values"][0] == pytest.approx(99.01)
    assert by_id["rate"]["Values"] == [50.0]


def test_metric_math_alarm(aws: Emulator, cw: Any) -> None:
    def stat(query_id: str, metric: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": DIMS},
                "Period": 60,
                "Stat": "Sum",
            },
            "ReturnData": False,
        }

    cw.put_metric_alarm(
        AlarmName="rate",
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
        Metrics=[
            stat("e", "Errors"),
            stat("n", "Invocations"),
            {"Id": "r", "Expression": "e/n*100", "ReturnData": True},
        ],
    )
    _put(cw, 1, name="Errors")
    _put(cw, 4, name="Invocations")
    aws.evaluate_alarms()
    assert _state(cw, "rate")["StateValue"] == "ALARM"
