"""Metric queries as the shell sends them: per-version dimensions, unique ids, metric math, packing, and
the sequential tests' counts planned into the same batch and handed back as complete looks."""

from __future__ import annotations

import dataclasses

import pytest

from controller.analysis.queries import (
    count_dimensions,
    dimensions,
    looks_from,
    measurements_from,
    plan,
    plan_looks,
    queries_for,
)
from controller.aws.cloudwatch import MAX_QUERIES, pack
from controller.core.sequential import Look
from controller.core.sequential_analysis import fingerprint
from controller.core.types import Measurement, Phase, Record
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    CanaryStrategy,
    CompareToStable,
    CountMetric,
    Metric,
    MetricQuery,
    RolloutSpec,
    SequentialTest,
    SetWeight,
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


# ---- sequential counts ---------------------------------------------------------------------------

ERRORS = SequentialTest("errors", period=60.0, publication_delay=30.0)
CHECKOUT = SequentialTest(
    "checkout",
    failures=CountMetric("CheckoutFailed", "Shop/Orders"),
    total=CountMetric("CheckoutAttempted", "Shop/Orders"),
    version_dimension="FunctionVersion",
    dimensions=(("Service", "orders"),),
    period=10.0,
    publication_delay=5.0,
)


def sequential_spec(*tests: SequentialTest, metrics: tuple[Metric, ...] = ()) -> RolloutSpec:
    # A weight plan: sequential tests read nothing of an all-at-once rollout.
    return dataclasses.replace(
        spec(*metrics), strategy=CanaryStrategy((SetWeight(10),)), analysis=Analysis(metrics=metrics, sequential=tests)
    )


def test_counts_are_scoped_by_lambdas_dimensions_or_the_tests_own() -> None:
    rollout = sequential_spec(ERRORS, CHECKOUT)
    lambda_dims = [
        {"Name": "FunctionName", "Value": "api"},
        {"Name": "Resource", "Value": "api:live"},
        {"Name": "ExecutedVersion", "Value": "2"},
    ]
    assert count_dimensions(rollout, ERRORS, ERRORS.failures, "2") == lambda_dims
    assert count_dimensions(rollout, CHECKOUT, CHECKOUT.total, "2") == [
        {"Name": "Service", "Value": "orders"},
        {"Name": "FunctionVersion", "Value": "2"},
    ]
    # A custom failure count over Lambda's own invocations: each metric where it lives.
    mixed = dataclasses.replace(CHECKOUT, total=CountMetric("Invocations"))
    assert count_dimensions(rollout, mixed, mixed.total, "2") == lambda_dims


def test_due_periods_are_planned_in_the_same_batch_as_the_metrics() -> None:
    rate = dataclasses.replace(RATE, period=60.0)
    items = [(sequential_spec(ERRORS, CHECKOUT, metrics=(rate,)), RECORD)]
    # The weight came at 960: [960, 1020) is published at 1050; ten-second periods from 960 at +5 s.
    groups, planned = plan_looks(items, now=1_050.0)
    assert [p.test.name for p in planned] == ["errors", "checkout"]
    assert planned[0].starts == (960.0,) and planned[1].starts == tuple(960.0 + 10 * k for k in range(8))
    ids = [[q["Id"] for q in group] for group in groups]
    assert ids == [[f"r0q{t}{kind}{side}"] for t in (0, 1) for kind in "fn" for side in "cs"]
    stat = groups[1][0]["MetricStat"]
    assert stat["Stat"] == "Sum" and stat["Period"] == 60 and stat["Metric"]["MetricName"] == "Errors"
    assert stat["Metric"]["Dimensions"][-1] == {"Name": "ExecutedVersion", "Value": "1"}  # stable's failures
    assert groups[7][0]["MetricStat"]["Period"] == 10
    assert plan_looks(items, now=1_049.0)[1][0].test.name == "checkout"  # errors' period not published yet
    metric_ids = {q["Id"] for g in plan(items, now=1_050.0)[0] for q in g}
    assert metric_ids.isdisjoint({i for row in ids for i in row})


def test_complete_periods_are_handed_over_in_order_until_one_is_not_published_whole() -> None:
    items = [(sequential_spec(CHECKOUT), RECORD)]
    _, planned = plan_looks(items, now=1_005.0)  # periods at 960, 970, 980, 990
    series = {
        "r0q0fc": {960.0: 1.0, 980.0: 2.0, 990.0: 1.0},
        "r0q0nc": {960.0: 10.0, 970.0: 12.0, 980.0: 1.0, 990.0: 9.0},  # 980: failures ahead of requests
        "r0q0fs": {960.0: 3.0, 970.0: 0.0, 990.0: 2.0},
        "r0q0ns": {960.0: 90.0, 970.0: 88.0, 990.0: 91.0},
    }
    (found,) = looks_from(series, planned)["ns/api"].values()
    assert (found.test, found.version, found.stable) == (fingerprint(CHECKOUT), "2", "1")
    assert found.looks == (
        Look(960.0, 970.0, canary_requests=10, canary_failures=1, stable_requests=90, stable_failures=3),
        Look(970.0, 980.0, canary_requests=12, canary_failures=0, stable_requests=88, stable_failures=0),
    )
    # No datapoint at all: no requests in the period, a look that proves nothing.
    (empty,) = looks_from({}, planned)["ns/api"].values()
    assert [look.canary_requests + look.stable_requests for look in empty.looks] == [0, 0, 0, 0]
    # Nothing complete from the first period on: nothing handed over.
    assert looks_from({"r0q0fs": {960.0: 1.0}}, planned) == {}
