"""Alarms are evaluated like CloudWatch does, and every state change reaches EventBridge."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

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


def _clear_of_period_end(period: int = 60, margin: float = 5.0) -> None:
    """Wait until the current ``period`` has at least ``margin`` seconds left.

    The emulator evaluates the current, still open period, and datapoints are stamped with
    the wall clock: a test that puts data and then expects a state would fail (no bug, just
    timing) if a period ended between the two, splitting or expiring its datapoints.
    """
    left = period - time.time() % period
    if left < margin:
        time.sleep(left + 0.05)


def _state(cw: Any, name: str = "errors") -> dict[str, Any]:
    return dict(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0])


def test_new_alarm_is_insufficient_data_then_alarm_then_ok(aws: Emulator, cw: Any) -> None:
    _clear_of_period_end()
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
    _clear_of_period_end()
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
    # Both datapoints are stamped from one clock reading: had the second used a later "now",
    # a 10 s period boundary crossed in between (likely on a loaded machine) would put both in
    # one period, and 2 breaching periods would never be seen.
    now = datetime.now(UTC)
    cw.put_metric_data(
        Namespace="AWS/Lambda", MetricData=[{"MetricName": "Errors", "Value": 5, "Dimensions": DIMS, "Timestamp": now}]
    )
    aws.evaluate_alarms()
    assert _state(cw)["StateValue"] == "OK"  # 1 of 3 breaching, 2 needed
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
    _clear_of_period_end()
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
    _clear_of_period_end()

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


# ----- DescribeAlarms paging -----


def _names(page: dict[str, Any], key: str = "MetricAlarms") -> list[str]:
    return [alarm["AlarmName"] for alarm in page[key]]


def test_describe_alarms_pages_with_max_records_and_next_token(cw: Any) -> None:
    for index in range(7):
        _alarm(cw, f"a{index}", TreatMissingData="breaching" if index % 2 else "notBreaching")
    first = cw.describe_alarms(MaxRecords=3)
    assert _names(first) == ["a0", "a1", "a2"]
    second = cw.describe_alarms(MaxRecords=3, NextToken=first["NextToken"])
    assert _names(second) == ["a3", "a4", "a5"]
    last = cw.describe_alarms(MaxRecords=3, NextToken=second["NextToken"])
    assert _names(last) == ["a6"] and "NextToken" not in last
    pages = list(cw.get_paginator("describe_alarms").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 4
    assert [name for page in pages for name in _names(page)] == [f"a{i}" for i in range(7)]
    by_names = cw.describe_alarms(AlarmNames=["a1", "a4", "a6"], MaxRecords=2)
    assert _names(by_names) == ["a1", "a4"]
    assert _names(cw.describe_alarms(AlarmNames=["a1", "a4", "a6"], NextToken=by_names["NextToken"])) == ["a6"]


def test_describe_alarms_pages_a_state_filter(aws: Emulator, cw: Any) -> None:
    for index in range(7):
        _alarm(cw, f"a{index}", TreatMissingData="breaching" if index % 2 else "notBreaching")
    # Assert on the eventual state: the evaluator thread moves the alarms on its own schedule.
    aws.wait_for(lambda: len(cw.describe_alarms(StateValue="ALARM")["MetricAlarms"]) == 3, timeout=5)
    pages = cw.get_paginator("describe_alarms").paginate(StateValue="ALARM", PaginationConfig={"PageSize": 2})
    assert [name for page in pages for name in _names(page)] == ["a1", "a3", "a5"]


def test_describe_alarms_default_page_is_50(cw: Any) -> None:
    for index in range(55):
        _alarm(cw, f"a{index:02d}")
    first = cw.describe_alarms()
    assert len(first["MetricAlarms"]) == 50 and first["NextToken"]
    assert len(cw.describe_alarms(NextToken=first["NextToken"])["MetricAlarms"]) == 5
    assert len(cw.describe_alarms(MaxRecords=100)["MetricAlarms"]) == 55


def test_describe_alarms_refuses_bad_paging_parameters(aws: Emulator, cw: Any) -> None:
    from botocore.config import Config

    raw = aws.client("cloudwatch", config=Config(parameter_validation=False))
    for bad in (0, 101):
        with pytest.raises(ClientError) as exc:
            raw.describe_alarms(MaxRecords=bad)
        assert exc.value.response["Error"]["Code"] == "ValidationError"
        assert "maxRecords" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        cw.describe_alarms(NextToken="not-a-token")
    assert exc.value.response["Error"]["Code"] == "InvalidNextToken"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ----- composite alarms -----


@pytest.fixture
def children(aws: Emulator, cw: Any) -> dict[str, str]:
    """Three metric alarms that settle in ALARM, OK and INSUFFICIENT_DATA and stay there."""
    _alarm(cw, "hot", TreatMissingData="breaching")
    _alarm(cw, "cold", TreatMissingData="notBreaching")
    _alarm(cw, "unknown", TreatMissingData="missing")
    wanted = {"hot": "ALARM", "cold": "OK", "unknown": "INSUFFICIENT_DATA"}
    aws.wait_for(lambda: all(_state(cw, name)["StateValue"] == state for name, state in wanted.items()), timeout=5)
    return wanted


def _composite(cw: Any, name: str = "gate") -> dict[str, Any]:
    return dict(cw.describe_alarms(AlarmNames=[name], AlarmTypes=["CompositeAlarm"])["CompositeAlarms"][0])


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('ALARM("hot")', "ALARM"),
        ("ALARM(cold)", "OK"),
        ('OK("cold") AND INSUFFICIENT_DATA("unknown")', "ALARM"),
        ("NOT ALARM(hot) OR FALSE", "OK"),
        ("TRUE", "ALARM"),
        ("(ALARM(cold) OR ALARM(hot)) AND NOT OK(hot)", "ALARM"),
        ("ALARM(cold) OR ALARM(hot) AND ALARM(unknown)", "OK"),  # AND binds tighter than OR
        ("ALARM(arn:aws:cloudwatch:us-east-1:123456789012:alarm:hot)", "ALARM"),
    ],
)
def test_composite_rule_is_evaluated_over_child_states(
    aws: Emulator, cw: Any, children: dict[str, str], rule: str, expected: str
) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule=rule)
    alarm = aws.wait_for(lambda: (a := _composite(cw))["StateValue"] != "INSUFFICIENT_DATA" and a, timeout=5)
    assert alarm["StateValue"] == expected
    assert alarm["AlarmRule"] == rule


def test_composite_follows_its_children_and_publishes_events(aws: Emulator, cw: Any, children: dict[str, str]) -> None:
    _clear_of_period_end()
    sqs, events = aws.client("sqs"), aws.client("events")
    queue_url = sqs.create_queue(QueueName="composite-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="alarms", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="alarms", Targets=[{"Id": "q", "Arn": queue_arn}])
    _alarm(cw, "flip", MetricName="Throttles", TreatMissingData="notBreaching")
    aws.wait_for(lambda: _state(cw, "flip")["StateValue"] == "OK", timeout=5)
    cw.put_composite_alarm(AlarmName="gate", AlarmRule='ALARM("flip") AND OK("cold")', AlarmDescription="rollback")
    aws.wait_for(lambda: _composite(cw)["StateValue"] == "OK", timeout=5)
    _put(cw, 5, name="Throttles")  # only "flip" watches this metric: it breaches now
    alarm = aws.wait_for(lambda: (a := _composite(cw))["StateValue"] == "ALARM" and a, timeout=5)
    flip_arn = _state(cw, "flip")["AlarmArn"]
    assert alarm["StateReason"].startswith(f"{flip_arn} transitioned to ALARM at ")
    triggering = json.loads(alarm["StateReasonData"])["triggeringAlarms"]
    assert {t["arn"].rsplit(":", 1)[1] for t in triggering} == {"flip", "cold"}
    assert all(t["state"]["value"] in ("ALARM", "OK") for t in triggering)
    seen: list[dict[str, Any]] = []

    def gate_alarm_event() -> dict[str, Any] | None:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            seen.append(json.loads(message["Body"]))
        return next(
            (e for e in seen if e["detail"]["alarmName"] == "gate" and e["detail"]["state"]["value"] == "ALARM"),
            None,
        )

    event = aws.wait_for(gate_alarm_event, timeout=5)
    assert event["detail-type"] == "CloudWatch Alarm State Change"
    assert event["detail"]["previousState"]["value"] == "OK"
    assert event["detail"]["configuration"]["alarmRule"] == 'ALARM("flip") AND OK("cold")'
    assert event["detail"]["configuration"]["description"] == "rollback"


def test_set_alarm_state_on_a_composite_holds_until_a_child_changes(
    aws: Emulator, cw: Any, children: dict[str, str]
) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule="ALARM(hot)")
    aws.wait_for(lambda: _composite(cw)["StateValue"] == "ALARM", timeout=5)
    cw.set_alarm_state(AlarmName="gate", StateValue="OK", StateReason="muted by hand")
    aws.evaluate_alarms()
    aws.evaluate_alarms()
    assert _composite(cw)["StateValue"] == "OK"
    assert _composite(cw)["StateReason"] == "muted by hand"


def test_describe_alarms_returns_composites_only_when_asked(aws: Emulator, cw: Any, children: dict[str, str]) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule="ALARM(hot) OR ALARM(cold)")
    cw.put_composite_alarm(AlarmName="quiet", AlarmRule="ALARM(cold)")
    default = cw.describe_alarms()
    assert _names(default) == ["cold", "hot", "unknown"] and default["CompositeAlarms"] == []
    only = cw.describe_alarms(AlarmTypes=["CompositeAlarm"])
    assert only["MetricAlarms"] == [] and _names(only, "CompositeAlarms") == ["gate", "quiet"]
    both = cw.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert len(both["MetricAlarms"]) == 3 and len(both["CompositeAlarms"]) == 2
    aws.wait_for(lambda: _composite(cw)["StateValue"] == "ALARM" and _composite(cw, "quiet")["StateValue"] == "OK")
    in_alarm = cw.describe_alarms(StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert _names(in_alarm) == ["hot"] and _names(in_alarm, "CompositeAlarms") == ["gate"]
    pages = cw.get_paginator("describe_alarms").paginate(
        AlarmTypes=["CompositeAlarm", "MetricAlarm"], PaginationConfig={"PageSize": 2}
    )
    assert sorted(
        name for page in pages for key in ("MetricAlarms", "CompositeAlarms") for name in _names(page, key)
    ) == [
        "cold",
        "gate",
        "hot",
        "quiet",
        "unknown",
    ]
    kids = cw.describe_alarms(ChildrenOfAlarmName="gate")
    assert _names(kids) == ["cold", "hot"]
    parents = cw.describe_alarms(ParentsOfAlarmName="cold")
    assert _names(parents, "CompositeAlarms") == ["gate", "quiet"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("ALARM(missing)", "Could not save the composite alarm as alarms [missing] in the alarm rule do not exist"),
        ("ALARM(hot) AND", "Error in AlarmRule"),
        ("ALARM(hot) XOR ALARM(cold)", "Error in AlarmRule [Unsupported token 'XOR'"),
        ("ALARM(hot", "Error in AlarmRule"),
    ],
)
def test_put_composite_alarm_refuses_bad_rules(cw: Any, children: dict[str, str], rule: str, message: str) -> None:
    with pytest.raises(ClientError) as exc:
        cw.put_composite_alarm(AlarmName="gate", AlarmRule=rule)
    assert exc.value.response["Error"]["Code"] == "ValidationError"
    assert exc.value.response["Error"]["Message"].startswith(message)
