"""CloudWatch as AWS runs it: reserved namespaces, statistics, alarms evaluated once per period, events.

Most tests stop the emulator's evaluation timer and evaluate at an instant they choose
(``evaluate_alarms(at=...)``), with datapoints stamped inside closed periods, so nothing depends on
where the wall clock is. The tests of the timer itself look only at what the emulator recorded
(history timestamps) against lower bounds that no slow machine can break.
"""

from __future__ import annotations

import json
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from controller.emulator import Emulator
from tests.integration.helpers import ALARM_PERIOD_SCALE

NAMESPACE = "Shop/Checkout"
DIMS = [{"Name": "Service", "Value": "checkout"}, {"Name": "Stage", "Value": "prod"}]
#: A 60 s alarm period on the wall clock at the tests' time scale, in microseconds.
PERIOD_US = round(60 * ALARM_PERIOD_SCALE * 1_000_000)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def cw(aws: Emulator) -> Any:
    return aws.client("cloudwatch")


@pytest.fixture
def manual(aws: Emulator) -> Iterator[Emulator]:
    """The emulator with its evaluation timer stopped: alarms move only when the test evaluates them."""
    aws.configure(alarm_evaluation=False)
    yield aws


def at_us(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def boundary(periods_ago: int = 0) -> int:
    """The start (µs) of a 60 s alarm period (scaled) that closed ``periods_ago`` periods before the last one."""
    now_us = (datetime.now(UTC) - EPOCH) // timedelta(microseconds=1)
    return (now_us // PERIOD_US - periods_ago) * PERIOD_US


def alarm(cw: Any, name: str = "errors", **overrides: Any) -> None:
    params: dict[str, Any] = {
        "AlarmName": name,
        "Namespace": NAMESPACE,
        "MetricName": "Errors",
        "Dimensions": DIMS,
        "Statistic": "Sum",
        "Period": 60,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    cw.put_metric_alarm(**(params | overrides))


def put(
    cw: Any, value: float, *, at: datetime, name: str = "Errors", dims: list[dict[str, str]] = DIMS, **extra: Any
) -> None:
    datum = {"MetricName": name, "Value": value, "Dimensions": dims, "Timestamp": at, **extra}
    cw.put_metric_data(Namespace=NAMESPACE, MetricData=[datum])


def state(cw: Any, name: str = "errors") -> dict[str, Any]:
    return dict(cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0])


# ----- reserved namespaces ----------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["AWS/Lambda", "AWS/EC2", "AWS/"])
def test_put_metric_data_into_an_aws_namespace_is_refused(cw: Any, namespace: str) -> None:
    with pytest.raises(ClientError) as exc:
        cw.put_metric_data(Namespace=namespace, MetricData=[{"MetricName": "Errors", "Value": 1.0}])
    error = exc.value.response["Error"]
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"] == f"The value {namespace} for parameter Namespace is invalid."
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ----- statistics and GetMetricData -------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "extended", "threshold", "expected"),
    [
        ("Average", None, 2.5, "ALARM"),
        ("Average", None, 5.0, "OK"),
        ("Maximum", None, 6.0, "ALARM"),
        ("Minimum", None, 1.0, "ALARM"),
        ("SampleCount", None, 4.0, "OK"),
        (None, "p99", 5.0, "ALARM"),
        (None, "p50", 3.0, "OK"),
    ],
)
def test_alarm_statistics(
    manual: Emulator, cw: Any, stat: str | None, extended: str | None, threshold: float, expected: str
) -> None:
    extra: dict[str, Any] = {"ExtendedStatistic": extended} if extended else {"Statistic": stat}
    alarm(cw, "lat", MetricName="Duration", Threshold=threshold, **extra)
    start = boundary(1)
    for offset, value in enumerate((1.0, 2.0, 6.0)):
        put(cw, value, name="Duration", at=at_us(start + 100_000 * (offset + 1)))
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    assert state(cw, "lat")["StateValue"] == expected


def test_get_metric_data_percentile_and_math(cw: Any) -> None:
    at = datetime.now(UTC) - timedelta(minutes=2)
    cw.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "Duration",
                "Dimensions": DIMS,
                "Timestamp": at,
                "Values": [float(v) for v in range(1, 101)],
            },
            {"MetricName": "Errors", "Dimensions": DIMS, "Timestamp": at, "Value": 2.0},
            {"MetricName": "Invocations", "Dimensions": DIMS, "Timestamp": at, "Values": [1.0], "Counts": [4.0]},
        ],
    )

    def stat(query_id: str, metric: str, stat_name: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": DIMS},
                "Period": 300,
                "Stat": stat_name,
            },
            "ReturnData": False,
        }

    result = cw.get_metric_data(
        StartTime=at - timedelta(minutes=10),
        EndTime=at + timedelta(minutes=5),
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


def test_high_resolution_custom_metrics_read_per_second(cw: Any) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    for second in range(5):
        for _ in range(second + 1):  # 1, 2, 3, 4, 5 failures in five consecutive seconds
            put(cw, 1.0, at=start + timedelta(seconds=second, milliseconds=500), StorageResolution=1)
    found = cw.get_metric_data(
        StartTime=start,
        EndTime=start + timedelta(seconds=5),
        ScanBy="TimestampAscending",
        MetricDataQueries=[
            {
                "Id": "e",
                "MetricStat": {
                    "Metric": {"Namespace": NAMESPACE, "MetricName": "Errors", "Dimensions": DIMS},
                    "Period": 1,
                    "Stat": "Sum",
                },
            }
        ],
    )["MetricDataResults"][0]
    assert found["Values"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [t.astimezone(UTC) for t in found["Timestamps"]] == [start + timedelta(seconds=s) for s in range(5)]


# ----- alarm evaluation -------------------------------------------------------------------


def test_new_alarm_is_insufficient_data_then_alarm_then_ok(manual: Emulator, cw: Any) -> None:
    alarm(cw, TreatMissingData="missing")
    assert state(cw)["StateValue"] == "INSUFFICIENT_DATA"
    assert state(cw)["StateReason"] == "Unchecked: Initial alarm creation"
    start = boundary(2)
    put(cw, 5.0, at=at_us(start + 100_000))
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    first = state(cw)
    assert first["StateValue"] == "ALARM"
    assert first["StateReason"].startswith("Threshold Crossed")
    reason = json.loads(first["StateReasonData"])
    assert reason["recentDatapoints"] == [5.0]
    assert reason["period"] == 60  # the alarm's own period, whatever the emulator's time scale
    assert reason["evaluatedDatapoints"][0]["timestamp"] == at_us(start).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    alarm(cw, Threshold=100.0)  # an update keeps the state; the next evaluation moves it
    assert state(cw)["StateValue"] == "ALARM"
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    assert state(cw)["StateValue"] == "OK"


def test_an_alarm_reads_exactly_the_periods_that_closed(manual: Emulator, cw: Any) -> None:
    """The data window is the scaled period: only the datapoints stamped in it count, the open one never."""
    alarm(cw, Threshold=3.0, TreatMissingData="notBreaching")
    start = boundary(3)
    put(cw, 2.0, at=at_us(start - 100_000))  # the period before
    put(cw, 2.0, at=at_us(start + 100_000))  # the evaluated period: 2 < 3
    put(cw, 9.0, at=at_us(start + PERIOD_US + 100_000))  # the next period, still open at the evaluation
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    assert state(cw)["StateValue"] == "OK"
    assert json.loads(state(cw)["StateReasonData"])["recentDatapoints"] == [2.0]
    manual.evaluate_alarms(at=at_us(start + 2 * PERIOD_US))
    assert state(cw)["StateValue"] == "ALARM"
    assert json.loads(state(cw)["StateReasonData"])["recentDatapoints"] == [9.0]


def test_dimensions_match_exactly(manual: Emulator, cw: Any) -> None:
    alarm(cw, TreatMissingData="notBreaching")
    start = boundary(1)
    put(cw, 5.0, at=at_us(start + 100_000), dims=[*DIMS, {"Name": "Version", "Value": "2"}])
    put(cw, 5.0, at=at_us(start + 100_000), dims=DIMS[:1])
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    assert state(cw)["StateValue"] == "OK"


@pytest.mark.parametrize(
    ("treat", "expected"),
    [("missing", "INSUFFICIENT_DATA"), ("notBreaching", "OK"), ("breaching", "ALARM"), ("ignore", "INSUFFICIENT_DATA")],
)
def test_treat_missing_data(manual: Emulator, cw: Any, treat: str, expected: str) -> None:
    alarm(cw, TreatMissingData=treat)
    manual.evaluate_alarms()
    assert state(cw)["StateValue"] == expected


def test_datapoints_to_alarm_m_out_of_n(manual: Emulator, cw: Any) -> None:
    alarm(cw, EvaluationPeriods=3, DatapointsToAlarm=2, TreatMissingData="notBreaching")
    start = boundary(4)
    put(cw, 5.0, at=at_us(start + 100_000))
    manual.evaluate_alarms(at=at_us(start + 3 * PERIOD_US))
    assert state(cw)["StateValue"] == "OK"  # 1 of 3 breaching, 2 needed
    put(cw, 5.0, at=at_us(start + 2 * PERIOD_US + 100_000))
    manual.evaluate_alarms(at=at_us(start + 3 * PERIOD_US))
    assert state(cw)["StateValue"] == "ALARM"
    assert "2 out of the last 3 datapoints" in state(cw)["StateReason"]


def test_metric_math_alarm(manual: Emulator, cw: Any) -> None:
    def stat(query_id: str, metric: str) -> dict[str, Any]:
        return {
            "Id": query_id,
            "MetricStat": {
                "Metric": {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": DIMS},
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
    start = boundary(1)
    put(cw, 1.0, at=at_us(start + 100_000))
    put(cw, 4.0, name="Invocations", at=at_us(start + 100_000))
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    assert state(cw, "rate")["StateValue"] == "ALARM"


def history_times(cw: Any, name: str, new_state: str) -> list[datetime]:
    items = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate", ScanBy="TimestampAscending")
    return [
        item["Timestamp"].astimezone(UTC)
        for item in items["AlarmHistoryItems"]
        if json.loads(item["HistoryData"])["newState"]["stateValue"] == new_state
    ]


def test_alarms_are_evaluated_at_period_boundaries_and_a_hand_set_state_holds_until_then(
    aws: Emulator, cw: Any
) -> None:
    # 60 s periods lasting 2 s of wall time: long enough to tell "at the boundary" from "at once".
    aws.configure(alarm_period_scale=2 / 60)
    period = timedelta(seconds=2)
    alarm(cw, TreatMissingData="breaching")  # no data: every evaluation says ALARM
    aws.wait_for(lambda: state(cw)["StateValue"] == "ALARM", timeout=10)
    for _ in range(2):
        set_at = datetime.now(UTC)
        cw.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="by hand")
        aws.wait_for(lambda: state(cw)["StateValue"] == "ALARM", timeout=10)
        back = history_times(cw, "errors", "ALARM")[-1]
        # Not before the end of the period the hand-set state was made in (epoch-aligned periods).
        next_boundary = EPOCH + ((set_at - EPOCH) // period + 1) * period
        assert back >= next_boundary - timedelta(milliseconds=1), (set_at, back)
    transitions = history_times(cw, "errors", "ALARM")
    assert len(transitions) == 3  # the first evaluation, then once after each hand-set OK


def test_set_alarm_state_holds_until_the_next_evaluation(manual: Emulator, cw: Any) -> None:
    alarm(cw, TreatMissingData="notBreaching")
    manual.evaluate_alarms()
    assert state(cw)["StateValue"] == "OK"
    cw.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="by hand")
    assert (state(cw)["StateValue"], state(cw)["StateReason"]) == ("ALARM", "by hand")
    manual.evaluate_alarms()
    assert state(cw)["StateValue"] == "OK"


def test_state_timestamps_updated_and_transitioned(manual: Emulator, cw: Any) -> None:
    alarm(cw, TreatMissingData="notBreaching")
    created = state(cw)
    assert created["StateTransitionedTimestamp"] == created["StateUpdatedTimestamp"]
    time.sleep(0.01)
    cw.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="first")
    fired = state(cw)
    assert fired["StateTransitionedTimestamp"] == fired["StateUpdatedTimestamp"] > created["StateUpdatedTimestamp"]
    time.sleep(0.01)
    cw.set_alarm_state(AlarmName="errors", StateValue="ALARM", StateReason="again")  # same value
    again = state(cw)
    assert again["StateReason"] == "again"
    assert again["StateUpdatedTimestamp"] > fired["StateUpdatedTimestamp"]
    assert again["StateTransitionedTimestamp"] == fired["StateTransitionedTimestamp"]
    alarm(cw, Threshold=2.0)  # an update changes neither
    assert state(cw)["StateTransitionedTimestamp"] == fired["StateTransitionedTimestamp"]


# ----- state changes reach EventBridge ----------------------------------------------------


def test_a_state_change_reaches_sqs_through_an_eventbridge_rule(manual: Emulator, cw: Any) -> None:
    """AWS's documented event, filtered by alarm name, delivered to an SQS target.

    AWS also needs a queue policy letting events.amazonaws.com send to the queue; moto does not
    enforce it, so this test cannot catch a missing one.
    """
    sqs, events = manual.client("sqs"), manual.client("events")
    queue_url = sqs.create_queue(QueueName="alarm-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {
        "source": ["aws.cloudwatch"],
        "detail-type": ["CloudWatch Alarm State Change"],
        "detail": {"alarmName": ["errors"]},
    }
    events.put_rule(Name="watched-alarms", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="watched-alarms", Targets=[{"Id": "q", "Arn": queue_arn}])
    alarm(cw, TreatMissingData="notBreaching", AlarmDescription="checkout errors")
    alarm(cw, "other", TreatMissingData="breaching")  # changes too, but the rule does not match it
    start = boundary(1)
    put(cw, 3.0, at=at_us(start + 100_000))
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    cw.set_alarm_state(AlarmName="errors", StateValue="OK", StateReason="by hand")

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [b["detail"]["state"]["value"] for b in bodies] == ["ALARM", "OK"]
    event = bodies[0]
    arn = state(cw)["AlarmArn"]
    assert (event["source"], event["detail-type"]) == ("aws.cloudwatch", "CloudWatch Alarm State Change")
    assert event["resources"] == [arn]
    assert (event["account"], event["region"]) == ("123456789012", "us-east-1")
    assert datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")  # ISO-8601, as AWS delivers it
    detail = event["detail"]
    assert detail["alarmName"] == "errors"
    assert set(detail["state"]) == {"value", "reason", "reasonData", "timestamp"}
    assert detail["state"]["reason"].startswith("Threshold Crossed")
    assert json.loads(detail["state"]["reasonData"])["recentDatapoints"] == [3.0]
    assert detail["previousState"]["value"] == "INSUFFICIENT_DATA"
    assert detail["previousState"]["reason"] == "Unchecked: Initial alarm creation"
    metric = detail["configuration"]["metrics"][0]["metricStat"]
    assert detail["configuration"]["description"] == "checkout errors"
    assert metric["metric"] == {
        "namespace": NAMESPACE,
        "name": "Errors",
        "dimensions": {"Service": "checkout", "Stage": "prod"},
    }
    assert (metric["period"], metric["stat"]) == (60, "Sum")
    assert bodies[1]["detail"]["previousState"]["value"] == "ALARM"
    assert bodies[1]["detail"]["state"]["reason"] == "by hand"


# ----- the query protocol (what CloudWatch spoke before awsJson) --------------------------


def query(aws: Emulator, **params: str) -> tuple[int, ET.Element]:
    """A signed query-protocol request (form-encoded ``Action=...``), answered in XML."""
    body = "&".join(f"{k}={urllib.request.quote(v, safe='')}" for k, v in {**params, "Version": "2010-08-01"}.items())
    request = AWSRequest(
        method="POST",
        url=aws.url + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("testing", "testing"), "monitoring", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(request.url, data=body.encode(), headers=dict(request.headers), method="POST")
    try:
        with urllib.request.urlopen(prepared, timeout=10) as response:
            return response.status, ET.fromstring(response.read())
    except urllib.error.HTTPError as err:
        return err.code, ET.fromstring(err.read())


def texts(root: ET.Element, tag: str) -> list[str]:
    return [element.text or "" for element in root.iter() if element.tag.rsplit("}", 1)[-1] == tag]


def test_the_query_protocol_works_too(manual: Emulator, cw: Any) -> None:
    status, root = query(
        manual,
        Action="PutMetricData",
        Namespace="AWS/Lambda",
        **{
            "MetricData.member.1.MetricName": "Errors",
            "MetricData.member.1.Value": "1",
        },
    )
    assert status == 400 and texts(root, "Code") == ["InvalidParameterValue"]
    alarm(cw, TreatMissingData="breaching")
    manual.evaluate_alarms()
    status, root = query(manual, Action="DescribeAlarms", **{"AlarmNames.member.1": "errors"})
    assert status == 200 and texts(root, "StateValue") == ["ALARM"]
    assert texts(root, "StateTransitionedTimestamp")
    status, root = query(manual, Action="DescribeAlarmHistory", AlarmName="errors", HistoryItemType="StateUpdate")
    assert status == 200
    assert texts(root, "HistorySummary") == ["Alarm updated from INSUFFICIENT_DATA to ALARM"]
    status, root = query(manual, Action="DescribeAlarmHistory", MaxRecords="0")
    assert status == 400 and texts(root, "Code") == ["ValidationError"]


# ----- DescribeAlarms paging --------------------------------------------------------------


def names(page: dict[str, Any], key: str = "MetricAlarms") -> list[str]:
    return [a["AlarmName"] for a in page[key]]


def test_describe_alarms_pages_with_max_records_and_next_token(cw: Any) -> None:
    for index in range(7):
        alarm(cw, f"a{index}")
    first = cw.describe_alarms(MaxRecords=3)
    assert names(first) == ["a0", "a1", "a2"]
    second = cw.describe_alarms(MaxRecords=3, NextToken=first["NextToken"])
    assert names(second) == ["a3", "a4", "a5"]
    last = cw.describe_alarms(MaxRecords=3, NextToken=second["NextToken"])
    assert names(last) == ["a6"] and "NextToken" not in last
    pages = list(cw.get_paginator("describe_alarms").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) == 4
    assert [name for page in pages for name in names(page)] == [f"a{i}" for i in range(7)]
    by_names = cw.describe_alarms(AlarmNames=["a1", "a4", "a6"], MaxRecords=2)
    assert names(by_names) == ["a1", "a4"]
    assert names(cw.describe_alarms(AlarmNames=["a1", "a4", "a6"], NextToken=by_names["NextToken"])) == ["a6"]


def test_describe_alarms_pages_a_state_filter(manual: Emulator, cw: Any) -> None:
    for index in range(7):
        alarm(cw, f"a{index}", TreatMissingData="breaching" if index % 2 else "notBreaching")
    manual.evaluate_alarms()
    pages = cw.get_paginator("describe_alarms").paginate(StateValue="ALARM", PaginationConfig={"PageSize": 2})
    assert [name for page in pages for name in names(page)] == ["a1", "a3", "a5"]


def test_describe_alarms_default_page_is_50(cw: Any) -> None:
    for index in range(55):
        alarm(cw, f"a{index:02d}")
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


# ----- composite alarms -------------------------------------------------------------------


@pytest.fixture
def children(manual: Emulator, cw: Any) -> dict[str, str]:
    """Three metric alarms in ALARM, OK and INSUFFICIENT_DATA; only the test moves them from here."""
    alarm(cw, "hot", TreatMissingData="breaching")
    alarm(cw, "cold", TreatMissingData="notBreaching")
    alarm(cw, "unknown", TreatMissingData="missing")
    manual.evaluate_alarms()
    wanted = {"hot": "ALARM", "cold": "OK", "unknown": "INSUFFICIENT_DATA"}
    assert {name: state(cw, name)["StateValue"] for name in wanted} == wanted
    return wanted


def composite(cw: Any, name: str = "gate") -> dict[str, Any]:
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
    cw: Any, children: dict[str, str], rule: str, expected: str
) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule=rule)
    found = composite(cw)  # evaluated when created, over the children's states
    assert found["StateValue"] == expected
    assert found["AlarmRule"] == rule


def test_composite_follows_its_children_and_publishes_events(
    manual: Emulator, cw: Any, children: dict[str, str]
) -> None:
    sqs, events = manual.client("sqs"), manual.client("events")
    queue_url = sqs.create_queue(QueueName="composite-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="alarms", EventPattern=json.dumps({"source": ["aws.cloudwatch"]}))
    events.put_targets(Rule="alarms", Targets=[{"Id": "q", "Arn": queue_arn}])
    alarm(cw, "flip", MetricName="Throttles", TreatMissingData="notBreaching")
    manual.evaluate_alarms()
    cw.put_composite_alarm(AlarmName="gate", AlarmRule='ALARM("flip") AND OK("cold")', AlarmDescription="rollback")
    assert composite(cw)["StateValue"] == "OK"
    start = boundary(1)
    put(cw, 5.0, name="Throttles", at=at_us(start + 100_000))  # only "flip" watches this metric
    manual.evaluate_alarms(at=at_us(start + PERIOD_US))
    found = composite(cw)
    assert found["StateValue"] == "ALARM"
    flip_arn = state(cw, "flip")["AlarmArn"]
    assert found["StateReason"].startswith(f"{flip_arn} transitioned to ALARM at ")
    triggering = json.loads(found["StateReasonData"])["triggeringAlarms"]
    assert {t["arn"].rsplit(":", 1)[1] for t in triggering} == {"flip", "cold"}
    bodies = [
        json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    event = next(b for b in bodies if b["detail"]["alarmName"] == "gate" and b["detail"]["state"]["value"] == "ALARM")
    assert event["detail"]["previousState"]["value"] == "OK"
    assert event["detail"]["configuration"] == {"alarmRule": 'ALARM("flip") AND OK("cold")', "description": "rollback"}


def test_set_alarm_state_on_a_composite_holds_until_a_child_changes(
    manual: Emulator, cw: Any, children: dict[str, str]
) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule="ALARM(hot)")
    assert composite(cw)["StateValue"] == "ALARM"
    cw.set_alarm_state(AlarmName="gate", StateValue="OK", StateReason="muted by hand")
    manual.evaluate_alarms()
    manual.evaluate_alarms()
    assert (composite(cw)["StateValue"], composite(cw)["StateReason"]) == ("OK", "muted by hand")
    cw.set_alarm_state(AlarmName="hot", StateValue="OK", StateReason="child moves")
    cw.set_alarm_state(AlarmName="hot", StateValue="ALARM", StateReason="child moves back")
    assert composite(cw)["StateValue"] == "ALARM"  # re-evaluated on each child change


def test_describe_alarms_returns_composites_only_when_asked(cw: Any, children: dict[str, str]) -> None:
    cw.put_composite_alarm(AlarmName="gate", AlarmRule="ALARM(hot) OR ALARM(cold)")
    cw.put_composite_alarm(AlarmName="quiet", AlarmRule="ALARM(cold)")
    default = cw.describe_alarms()
    assert names(default) == ["cold", "hot", "unknown"] and default["CompositeAlarms"] == []
    only = cw.describe_alarms(AlarmTypes=["CompositeAlarm"])
    assert only["MetricAlarms"] == [] and names(only, "CompositeAlarms") == ["gate", "quiet"]
    both = cw.describe_alarms(AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert len(both["MetricAlarms"]) == 3 and len(both["CompositeAlarms"]) == 2
    in_alarm = cw.describe_alarms(StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"])
    assert names(in_alarm) == ["hot"] and names(in_alarm, "CompositeAlarms") == ["gate"]
    pages = cw.get_paginator("describe_alarms").paginate(
        AlarmTypes=["CompositeAlarm", "MetricAlarm"], PaginationConfig={"PageSize": 2}
    )
    found = sorted(n for page in pages for key in ("MetricAlarms", "CompositeAlarms") for n in names(page, key))
    assert found == ["cold", "gate", "hot", "quiet", "unknown"]
    assert names(cw.describe_alarms(ChildrenOfAlarmName="gate")) == ["cold", "hot"]
    assert names(cw.describe_alarms(ParentsOfAlarmName="cold"), "CompositeAlarms") == ["gate", "quiet"]


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
