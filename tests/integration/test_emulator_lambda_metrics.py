"""Lambda's own metrics come from invocations: dimension sets, weighted routing per request, behaviours, traffic."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.emulator import Emulator
from controller.emulator.control import EmulatorControlError

FUNCTION = "svc"
ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}"


@pytest.fixture
def lam(aws: Emulator) -> Any:
    aws.seed_function(FUNCTION, versions=3)
    client = aws.client("lambda")
    client.create_alias(FunctionName=FUNCTION, Name="prod", FunctionVersion="1")
    return client


def dims(**named: str) -> list[dict[str, str]]:
    return [{"Name": name, "Value": value} for name, value in named.items()]


def stat(aws: Emulator, metric: str, dimensions: list[dict[str, str]], statistic: str = "Sum") -> float | None:
    """The statistic over the last ten minutes (one 600 s period), or None when there is no datapoint."""
    now = datetime.now(UTC)
    result = aws.client("cloudwatch").get_metric_data(
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(seconds=1),
        MetricDataQueries=[
            {
                "Id": "m",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": dimensions},
                    "Period": 600,
                    "Stat": statistic,
                },
            }
        ],
    )["MetricDataResults"][0]
    return sum(result["Values"]) if result["Values"] else None


def test_each_invocation_form_publishes_lambdas_dimension_sets(aws: Emulator, lam: Any) -> None:
    lam.invoke(FunctionName=FUNCTION)  # unqualified: $LATEST
    lam.invoke(FunctionName=FUNCTION, Qualifier="prod")
    lam.invoke(FunctionName=f"{FUNCTION}:prod")
    lam.invoke(FunctionName=f"{ARN}:prod")
    lam.invoke(FunctionName=f"123456789012:function:{FUNCTION}", Qualifier="2")
    lam.invoke(FunctionName=ARN, Qualifier="2")
    assert stat(aws, "Invocations", []) == 6  # all functions of the region
    assert stat(aws, "Invocations", dims(FunctionName=FUNCTION)) == 6
    assert stat(aws, "Invocations", dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod")) == 3
    executed = dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod", ExecutedVersion="1")
    assert stat(aws, "Invocations", executed) == 3
    assert stat(aws, "Invocations", dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:2")) == 2
    # A version invocation has no ExecutedVersion set; CloudWatch matches dimensions exactly.
    assert stat(aws, "Invocations", dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:2", ExecutedVersion="2")) is None
    assert stat(aws, "Invocations", dims(FunctionName=FUNCTION, ExecutedVersion="1")) is None
    assert stat(aws, "Errors", dims(FunctionName=FUNCTION)) == 0
    assert stat(aws, "Duration", dims(FunctionName=FUNCTION), "SampleCount") == 6
    metrics = aws.client("cloudwatch").list_metrics(Namespace="AWS/Lambda")["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"Invocations", "Errors", "Duration"}


def test_weighted_alias_routes_each_request_by_its_weights(aws: Emulator, lam: Any) -> None:
    lam.update_alias(FunctionName=FUNCTION, Name="prod", RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    seen = {lam.invoke(FunctionName=FUNCTION, Qualifier="prod")["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}
    result = aws.traffic(FUNCTION, "prod", count=4000, seed=11)
    assert sum(result.invocations.values()) == 4000
    assert 0.26 < result.invocations["2"] / 4000 < 0.34  # binomial: 0.3 +- 0.0072 (1 sd)
    assert (
        aws.traffic(FUNCTION, "prod", count=500, seed=11).invocations
        == aws.traffic(FUNCTION, "prod", count=500, seed=11).invocations
    )  # the same seed, the same draws
    for version, count in result.invocations.items():
        executed = dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod", ExecutedVersion=version)
        # The Invokes above plus the traffic: ExecutedVersion counts match what each version served.
        assert stat(aws, "Invocations", executed) >= count


def test_versions_answer_as_their_behaviour_says(aws: Emulator, lam: Any) -> None:
    aws.set_behaviour(FUNCTION, "2", error_rate=1.0, duration_ms=250.0)
    aws.set_behaviour(FUNCTION, "3", payload='{"logo": "brand.svg"}', duration_ms=40.0)
    failed = lam.invoke(FunctionName=FUNCTION, Qualifier="2", Payload=b'{"order": 1}')
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    assert failed["ExecutedVersion"] == "2"
    assert json.loads(failed["Payload"].read())["errorType"] == "Unhandled"
    fixed = lam.invoke(FunctionName=FUNCTION, Qualifier="3", Payload=b'{"order": 1}')
    assert "FunctionError" not in fixed and fixed["Payload"].read() == b'{"logo": "brand.svg"}'
    echoed = lam.invoke(FunctionName=FUNCTION, Qualifier="1", Payload=b'{"order": 1}')
    assert echoed["Payload"].read() == b'{"order": 1}'  # no behaviour set: the payload comes back
    two = dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:2")
    assert (stat(aws, "Errors", two), stat(aws, "Duration", two, "Maximum")) == (1, 250.0)
    assert stat(aws, "Duration", dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:3"), "Average") == 40.0
    assert lam.invoke(FunctionName=FUNCTION, Qualifier="2", InvocationType="Event")["StatusCode"] == 202
    assert lam.invoke(FunctionName=FUNCTION, Qualifier="2", InvocationType="DryRun")["StatusCode"] == 204
    assert stat(aws, "Invocations", two) == 2  # the asynchronous one counts, the dry run does not
    tail = lam.invoke(FunctionName=FUNCTION, Qualifier="3", LogType="Tail")
    assert "Duration: 40.00 ms" in base64.b64decode(tail["LogResult"]).decode()


def test_slow_calls_move_the_p99_and_a_real_sleep_is_capped(aws: Emulator, lam: Any) -> None:
    aws.set_behaviour(FUNCTION, "1", duration_ms=100.0, slow_share=0.05, slow_ms=3000.0)
    aws.traffic(FUNCTION, "prod", count=2000, seed=3)
    alias = dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod")
    assert stat(aws, "Duration", alias, "p50") == 100.0
    assert stat(aws, "Duration", alias, "p99") == 3000.0
    aws.configure(invoke_sleep_cap=0.2)
    aws.set_behaviour(FUNCTION, "2", duration_ms=10_000.0, sleep=True)
    started = time.monotonic()
    lam.invoke(FunctionName=FUNCTION, Qualifier="2")
    assert 0.2 <= time.monotonic() - started < 5.0  # slept, but no longer than the cap (plus a margin)
    assert stat(aws, "Duration", dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:2"), "Maximum") == 10_000.0


def test_traffic_spreads_a_rate_over_the_seconds_before_its_instant(aws: Emulator, lam: Any) -> None:
    aws.set_behaviour(FUNCTION, "1", error_rate=0.5)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    result = aws.traffic(FUNCTION, "prod", rate=100, seconds=4, at=end.timestamp(), seed=5)
    assert result.invocations == {"1": 400} and 150 < result.errors["1"] < 250
    found = aws.client("cloudwatch").get_metric_data(
        StartTime=end - timedelta(seconds=10),
        EndTime=end + timedelta(seconds=10),
        ScanBy="TimestampAscending",
        MetricDataQueries=[
            {
                "Id": "n",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Invocations",
                        "Dimensions": dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod", ExecutedVersion="1"),
                    },
                    "Period": 1,
                    "Stat": "Sum",
                },
            }
        ],
    )["MetricDataResults"][0]
    assert found["Values"] == [100.0, 100.0, 100.0, 100.0]
    assert found["Timestamps"][0].astimezone(UTC) == end - timedelta(seconds=4)


def test_an_alarm_on_lambdas_metrics_fires_from_invocations(aws: Emulator, lam: Any) -> None:
    aws.configure(alarm_evaluation=False)
    cw = aws.client("cloudwatch")
    cw.put_metric_alarm(
        AlarmName="canary-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Dimensions=dims(FunctionName=FUNCTION, Resource=f"{FUNCTION}:prod", ExecutedVersion="2"),
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5.0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )
    lam.update_alias(FunctionName=FUNCTION, Name="prod", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    aws.set_behaviour(FUNCTION, "2", error_rate=1.0)
    at = datetime.now(UTC) - timedelta(seconds=5)
    result = aws.traffic(FUNCTION, "prod", count=200, at=at.timestamp(), seed=1)
    assert result.errors.get("2", 0) > 5 and result.errors["1"] == 0
    aws.evaluate_alarms(at=at + timedelta(seconds=0.6))  # the end of the (scaled) period they fell in
    assert cw.describe_alarms(AlarmNames=["canary-errors"])["MetricAlarms"][0]["StateValue"] == "ALARM"


def test_traffic_and_behaviour_refuse_what_they_cannot_do(aws: Emulator, lam: Any) -> None:
    control = aws.control()
    for call in (
        lambda: control.traffic("missing", "prod", count=1),
        lambda: control.traffic(FUNCTION, "nope", count=1),
    ):
        with pytest.raises(EmulatorControlError) as exc:
            call()
        assert exc.value.status == 404 and "Function not found" in exc.value.message
    for call in (
        lambda: control.traffic(FUNCTION, "prod"),  # neither count nor rate
        lambda: control.traffic(FUNCTION, "prod", count=1, rate=2, seconds=1),
        lambda: control.traffic(FUNCTION, "prod", count=10_000_000),
        lambda: control.set_behaviour(FUNCTION, "1", error_rate=1.5),
    ):
        with pytest.raises(EmulatorControlError) as exc:
            call()
        assert exc.value.status == 400


def test_put_metric_data_cannot_stand_in_for_lambda(aws: Emulator) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as exc:
        aws.client("cloudwatch").put_metric_data(
            Namespace="AWS/Lambda", MetricData=[{"MetricName": "Errors", "Value": 5.0}]
        )
    assert exc.value.response["Error"]["Code"] == "InvalidParameterValue"
