"""Metric queries as the shell sends them: per-version dimensions, unique ids, metric math, packing."""

from __future__ import annotations

import pytest

from controller.analysis.queries import dimensions, measurements_from, plan, queries_for
from controller.aws.cloudwatch import MAX_QUERIES, pack
from controller.core.types import Measurement, Phase, Record
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    CompareToStable,
    Metric,
    MetricQuery,
    RolloutSpec,
    Threshold,
)

RATE = Metric(
    "error-rate",
    (MetricQuery("errors", "Errors", "Sum"), MetricQuery("invocations", "Invocations", "Sum")),
    expression="errors/invocations*100",
    threshold=Threshold(max=5),
)
P99 = Metric("p99", (MetricQuery("m", "Duration", "p99"),), compare_to_stable=CompareToStable(max_ratio=1.2))


def spec(*metrics: Metric, name: str = "api") -> RolloutSpec:
    return RolloutSpec(
        namespace="ns",
        name=name,
        function_name=f"arn:aws:lambda:us-east-1:123456789012:function:{name}",
        alias="live",
        strategy=AllAtOnceStrategy(),
        version="2",
        analysis=Analysis(metrics=metrics),
    )


RECORD = Record(phase=Phase.PROGRESSING, stable="1", canary="2", weight=10, weight_at=960.0)


def test_dimensions_scope_to_a_version_or_the_alias() -> None:
    base = [{"Name": "FunctionName", "Value": "api"}, {"Name": "Resource", "Value": "api:live"}]
    assert dimensions(spec(RATE), "7") == [*base, {"Name": "ExecutedVersion", "Value": "7"}]
    assert dimensions(spec(RATE), None) == base


def test_expression_ids_are_prefixed_and_inputs_return_no_data() -> None:
    queries = queries_for(RATE, prefix="r0m0c", dims=[], period=60)
    assert [(q["Id"], q["ReturnData"]) for q in queries] == [
        ("r0m0c_errors", False),
        ("r0m0c_invocations", False),
        ("r0m0c", True),
    ]
    assert queries[-1]["Expression"] == "r0m0c_errors/r0m0c_invocations*100"
    assert queries[0]["MetricStat"] == {
        "Metric": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": []},
        "Period": 60,
        "Stat": "Sum",
    }


def test_plan_scopes_stable_baseline_and_samples() -> None:
    sampled = Metric("errors", (MetricQuery("m", "Errors", "Sum"),), threshold=Threshold(max=1), min_samples=10)
    groups, planned = plan([(spec(P99, sampled), RECORD)], now=1_020.0)
    ids = [[q["Id"] for q in group] for group in groups]
    assert ids == [["r0m0c"], ["r0m0s"], ["r0m1c"], ["r0m1n"]]
    versions = [group[0]["MetricStat"]["Metric"]["Dimensions"][-1]["Value"] for group in groups]
    assert versions == ["2", "1", "2", "2"]  # canary, stable baseline, canary, canary's invocations
    assert groups[3][0]["MetricStat"]["Metric"]["MetricName"] == "Invocations"
    assert [(p.start, p.end, p.stable_id, p.samples_id) for p in planned] == [
        (960.0, 1020.0, "r0m0s", None),
        (960.0, 1020.0, None, "r0m1n"),
    ]


def test_nothing_is_planned_before_a_measurement_is_due() -> None:
    assert plan([(spec(RATE), RECORD)], now=1_019.0) == ([], [])


def test_each_measurement_reads_the_bucket_of_its_own_window() -> None:
    _, planned = plan([(spec(P99), RECORD)], now=1_020.0)
    series = {"r0m0c": {900.0: 50.0, 960.0: 130.0}, "r0m0s": {960.0: 100.0}}
    assert measurements_from(series, planned, now=1_020.0) == {
        "ns/api": {"p99": Measurement("2", 1_020.0, 960.0, value=130.0, stable=100.0)}
    }
    # Nothing in the window's bucket is no data, whatever is around it.
    assert measurements_from({"r0m0c": {900.0: 1.0}}, planned, now=1_020.0)["ns/api"]["p99"].value is None


def test_many_rollouts_share_one_call_until_500_queries() -> None:
    items = [(spec(RATE, name=f"f{i}"), RECORD) for i in range(200)]
    groups, planned = plan(items, now=1_020.0)
    assert len(planned) == 200 and len({q["Id"] for g in groups for q in g}) == 600
    calls = pack(groups)
    assert [len(c) for c in calls] == [498, 102]  # groups of three are never split across calls
    assert len(pack(groups[:166])) == 1
    with pytest.raises(ValueError, match="does not fit"):
        pack([[{}] * (MAX_QUERIES + 1)])
