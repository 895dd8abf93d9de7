"""Unit tests of ``Metrics``: feed statuses and events, parse the exposition, check every series.

The exposition is parsed with prometheus_client's own parser so the tests read what Prometheus
would scrape, not the internals of the metric objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.core.types import Event, Phase, SequentialEvidence, Status
from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    LinearStrategy,
    Pause,
    PresetStrategy,
    RolloutSpec,
    SetWeight,
    Strategy,
)
from controller.observability.http import Health, ObservabilityServer
from controller.observability.prometheus import (
    PROMOTION_KINDS,
    ROLLBACK_REASONS,
    Metrics,
    error_kind_label,
    rollback_reason_label,
    strategy_label,
)
from controller.runtime.sink import MetricsSink

SPEC = RolloutSpec(
    namespace="payments",
    name="checkout",
    function_name="checkout-fn",
    alias="live",
    strategy=CanaryStrategy(steps=(SetWeight(10), Pause(60.0), SetWeight(50))),
    progress_deadline=600.0,
)
OTHER = RolloutSpec(
    namespace="payments",
    name="refunds",
    function_name="refunds-fn",
    alias="live",
    strategy=CanaryStrategy(steps=(SetWeight(20),)),
)
IDENTITY = {"namespace": "payments", "name": "checkout", "function": "checkout-fn", "alias": "live"}


def status(
    phase: Phase, *, weight: int = 0, step: int = 0, stable: str | None = "1", canary: str | None = "2"
) -> Status:
    return Status(
        phase=phase,
        stable_version=stable,
        canary_version=canary,
        canary_weight=weight,
        current_step=step,
        steps=3,
        step_started_at=1000.0,
        message="",
        reason="",
    )


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by (sample name, label set)."""
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, metric: str, /, **labels: str) -> float | None:
    return samples(metrics).get((metric, frozenset(labels.items())))


def names_with(metrics: Metrics, **labels: str) -> set[str]:
    """Sample names having at least the given labels."""
    wanted = set(labels.items())
    return {name for name, label_set in samples(metrics) if wanted <= label_set}


def test_build_info_and_private_registry() -> None:
    first, second = Metrics(), Metrics()
    first.rollout_status(SPEC, status(Phase.PROGRESSING), strategy="canary")
    assert any(name == "lambda_rollouts_build_info" for name, _ in samples(first))
    # Separate registries: the second engine sees nothing of the first one's rollouts.
    assert not names_with(second, name="checkout")


def test_rollout_status_series() -> None:
    metrics = Metrics()
    metrics.rollout_status(SPEC, status(Phase.PROGRESSING, weight=10, step=1), strategy="canary")
    assert value(metrics, "lambda_rollouts_rollout_info", **IDENTITY, strategy="canary") == 1
    for phase in Phase:
        expected = 1 if phase == Phase.PROGRESSING else 0
        assert value(metrics, "lambda_rollouts_rollout_phase", **IDENTITY, phase=phase.value) == expected
    assert value(metrics, "lambda_rollouts_rollout_canary_weight_percent", **IDENTITY) == 10
    assert value(metrics, "lambda_rollouts_rollout_current_step", **IDENTITY) == 1
    assert value(metrics, "lambda_rollouts_rollout_steps", **IDENTITY) == 3
    assert value(metrics, "lambda_rollouts_rollout_step_started_timestamp_seconds", **IDENTITY) == 1000
    assert value(metrics, "lambda_rollouts_rollout_progress_deadline_seconds", **IDENTITY) == 600
    assert value(metrics, "lambda_rollouts_rollout_version_info", **IDENTITY, role="stable", version="1") == 1
    assert value(metrics, "lambda_rollouts_rollout_version_info", **IDENTITY, role="canary", version="2") == 1


def test_changed_labels_replace_old_series() -> None:
    metrics = Metrics()
    metrics.rollout_status(SPEC, status(Phase.PROGRESSING, weight=10), strategy="canary")
    metrics.rollout_status(SPEC, status(Phase.HEALTHY, weight=0, stable="2", canary=None), strategy="linear")
    versions = {
        dict(labels)["role"]: dict(labels)["version"]
        for name, labels in samples(metrics)
        if name == "lambda_rollouts_rollout_version_info"
    }
    assert versions == {"stable": "2"}
    assert value(metrics, "lambda_rollouts_rollout_info", **IDENTITY, strategy="canary") is None
    assert value(metrics, "lambda_rollouts_rollout_info", **IDENTITY, strategy="linear") == 1


def test_sequential_evidence_per_test_and_hypothesis_and_gone_with_the_test() -> None:
    def tested(*names: str) -> Status:
        found = tuple(
            SequentialEvidence(name, 12, 1000, 50, 5000, 0.25 * i, -1.5, 2.0, "Continue", 7)
            for i, name in enumerate(names, 1)
        )
        return dataclasses.replace(status(Phase.PROGRESSING, weight=10, step=2), evidence=found)

    metrics = Metrics()
    metrics.rollout_status(SPEC, tested("errors", "checkout"), strategy="canary")
    evidence = "lambda_rollouts_analysis_evidence"
    assert value(metrics, evidence, **IDENTITY, test="errors", hypothesis="regression") == 0.25
    assert value(metrics, evidence, **IDENTITY, test="checkout", hypothesis="regression") == 0.5
    assert value(metrics, evidence, **IDENTITY, test="errors", hypothesis="no_regression") == -1.5
    assert value(metrics, "lambda_rollouts_analysis_evidence_bound", **IDENTITY, test="checkout") == 2.0
    # A test no longer in flight (removed, or the attempt ended) leaves no series behind.
    metrics.rollout_status(SPEC, tested("checkout"), strategy="canary")
    assert value(metrics, evidence, **IDENTITY, test="errors", hypothesis="regression") is None
    assert value(metrics, "lambda_rollouts_analysis_evidence_bound", **IDENTITY, test="errors") is None
    assert value(metrics, evidence, **IDENTITY, test="checkout", hypothesis="no_regression") == -1.5
    metrics.rollout_status(SPEC, status(Phase.ROLLED_BACK), strategy="canary")
    assert not {name for name in names_with(metrics, **IDENTITY) if "evidence" in name}


def test_alarm_states_one_series_per_alarm() -> None:
    metrics = Metrics()
    metrics.alarm_states(SPEC, {"errors": "OK", "latency": "OK"})
    metrics.alarm_states(SPEC, {"errors": "ALARM"})
    states = {
        dict(labels)["alarm"]: dict(labels)["state"]
        for name, labels in samples(metrics)
        if name == "lambda_rollouts_alarm_state"
    }
    assert states == {"errors": "ALARM"}


def test_promotion_flow_counts_transitions_durations_and_promotion() -> None:
    metrics = Metrics()
    metrics.rollout_event(SPEC, from_phase=Phase.HEALTHY, to_phase=Phase.PROGRESSING, reason="Started", now=100.0)
    metrics.rollout_event(SPEC, from_phase=Phase.PROGRESSING, to_phase=Phase.PAUSED, reason="Paused", now=130.0)
    metrics.rollout_event(SPEC, from_phase=Phase.PAUSED, to_phase=Phase.HEALTHY, reason="Promoted", now=190.0)
    transitions = "lambda_rollouts_rollout_transitions_total"
    assert value(metrics, transitions, **IDENTITY, from_phase="Healthy", to_phase="Progressing") == 1
    assert value(metrics, transitions, **IDENTITY, from_phase="Paused", to_phase="Healthy") == 1
    phase_sum = "lambda_rollouts_rollout_phase_duration_seconds_sum"
    assert value(metrics, phase_sum, **IDENTITY, phase="Progressing") == 30
    assert value(metrics, phase_sum, **IDENTITY, phase="Paused") == 60
    assert value(metrics, "lambda_rollouts_rollout_phase_started_timestamp_seconds", **IDENTITY) == 190
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_sum", **IDENTITY, outcome="Healthy") == 90
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_count", **IDENTITY, outcome="Healthy") == 1
    assert value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind="auto") == 1
    assert not names_with(metrics, reason="alarm")


def test_rollback_by_alarm_with_reaction_time() -> None:
    metrics = Metrics()
    metrics.rollout_event(SPEC, from_phase=Phase.HEALTHY, to_phase=Phase.PROGRESSING, reason="Started", now=0.0)
    metrics.rollout_event(SPEC, from_phase=Phase.PROGRESSING, to_phase=Phase.ROLLED_BACK, reason="AlarmFired", now=50.0)
    metrics.rollback_reaction(SPEC, seconds=1.5)
    metrics.rollback_reaction(SPEC, seconds=0.05, source="event")
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="alarm") == 1
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_sum", **IDENTITY, outcome="RolledBack") == 50
    assert value(metrics, "lambda_rollouts_rollback_reaction_seconds_sum", **IDENTITY, source="poll") == 1.5
    assert value(metrics, "lambda_rollouts_rollback_reaction_seconds_bucket", **IDENTITY, source="poll", le="2.0") == 1
    assert value(metrics, "lambda_rollouts_rollback_reaction_seconds_bucket", **IDENTITY, source="poll", le="1.0") == 0
    assert value(metrics, "lambda_rollouts_rollback_reaction_seconds_bucket", **IDENTITY, source="event", le="0.1") == 1
    metrics.rollback_reaction(SPEC, seconds=1.0, source="carrier pigeon")  # a bounded label set
    assert value(metrics, "lambda_rollouts_rollback_reaction_seconds_count", **IDENTITY, source="poll") == 2
    assert not names_with(metrics, kind="auto")


def test_deadline_degrades_and_counts_as_deadline_rollback() -> None:
    metrics = Metrics()
    metrics.rollout_event(SPEC, from_phase=Phase.PENDING, to_phase=Phase.PROGRESSING, reason="Started", now=0.0)
    metrics.rollout_event(
        SPEC, from_phase=Phase.PROGRESSING, to_phase=Phase.DEGRADED, reason="ProgressDeadlineExceeded", now=700.0
    )
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="deadline") == 1
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_count", **IDENTITY, outcome="Degraded") == 1


def test_supersede_counts_a_rollback_and_restarts_the_attempt() -> None:
    metrics = Metrics()
    metrics.rollout_event(SPEC, from_phase=Phase.HEALTHY, to_phase=Phase.PROGRESSING, reason="Started", now=0.0)
    metrics.rollout_event(SPEC, from_phase=Phase.PROGRESSING, to_phase=Phase.PROGRESSING, reason="Superseded", now=40.0)
    metrics.rollout_event(SPEC, from_phase=Phase.PROGRESSING, to_phase=Phase.HEALTHY, reason="Promoted", now=100.0)
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="supersede") == 1
    # Same phase: no transition series, and the promoted attempt is measured from the supersede.
    assert not names_with(metrics, from_phase="Progressing", to_phase="Progressing")
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_sum", **IDENTITY, outcome="Healthy") == 60


def test_duration_unknown_after_restart_is_not_invented() -> None:
    metrics = Metrics()  # a fresh process that never saw the rollout start
    metrics.rollout_event(SPEC, from_phase=Phase.PAUSED, to_phase=Phase.HEALTHY, reason="Promoted", now=100.0)
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_count", **IDENTITY, outcome="Healthy") is None
    assert value(metrics, "lambda_rollouts_rollout_phase_duration_seconds_count", **IDENTITY, phase="Paused") is None
    assert value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind="auto") == 1


def test_undo_of_a_finished_rollout_is_a_manual_rollback() -> None:
    metrics = Metrics()
    metrics.rollout_event(SPEC, from_phase=Phase.HEALTHY, to_phase=Phase.ROLLED_BACK, reason="Undone", now=5.0)
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="manual") == 1
    assert not names_with(metrics, outcome="RolledBack")


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("AlarmFired", "alarm"),
        ("AnalysisFailed", "analysis"),
        ("RegressionDetected", "analysis"),
        ("ProgressDeadlineExceeded", "deadline"),
        ("Aborted", "manual"),
        ("Superseded", "supersede"),
        ("CanaryAlarmTriggered", "alarm"),
        ("AbortRequested", "manual"),
        ("HookFailed", "analysis"),
        ("SomethingNew", "analysis"),
    ],
)
def test_rollback_reason_labels(reason: str, label: str) -> None:
    assert rollback_reason_label(reason) == label
    assert label in ROLLBACK_REASONS


def test_reconcile_and_error_kinds_are_bounded() -> None:
    metrics = Metrics()
    metrics.reconcile_finished(SPEC, seconds=0.02, error=None)
    metrics.reconcile_finished(SPEC, seconds=0.3, error="ThrottlingException")
    metrics.reconcile_finished(SPEC, seconds=0.3, error="could not reach arn:aws:lambda:... (timeout)")
    assert value(metrics, "lambda_rollouts_reconcile_duration_seconds_count", **IDENTITY) == 3
    assert value(metrics, "lambda_rollouts_reconcile_errors_total", **IDENTITY, kind="ThrottlingException") == 1
    assert value(metrics, "lambda_rollouts_reconcile_errors_total", **IDENTITY, kind="other") == 1
    assert error_kind_label("KeyError") == "KeyError"


def test_aws_calls_budget_leader_ready() -> None:
    metrics = Metrics()
    metrics.api_call(service="lambda", operation="UpdateAlias", outcome="ok", seconds=0.01)
    metrics.api_call(service="lambda", operation="UpdateAlias", outcome="throttled", seconds=0.02)
    metrics.budget_wait(family="lambda-control", seconds=0.5)
    metrics.set_leader(True)
    metrics.set_ready(False)
    calls = "lambda_rollouts_aws_api_calls_total"
    scope = {"account": "default", "region": ""}
    assert value(metrics, calls, service="lambda", operation="UpdateAlias", outcome="throttled", **scope) == 1
    duration = "lambda_rollouts_aws_api_call_duration_seconds_count"
    assert value(metrics, duration, service="lambda", operation="UpdateAlias", **scope) == 2
    assert value(metrics, "lambda_rollouts_aws_budget_wait_seconds_sum", family="lambda-control", **scope) == 0.5
    # Another account's clients report under their own labels.
    other = metrics.aws_observer(account="111111111111", region="eu-west-1")
    other.api_call(service="lambda", operation="GetAlias", outcome="throttled", seconds=0.01)
    other.budget_wait(family="lambda", seconds=0.25)
    where = {"account": "111111111111", "region": "eu-west-1"}
    assert value(metrics, calls, service="lambda", operation="GetAlias", outcome="throttled", **where) == 1
    assert value(metrics, "lambda_rollouts_aws_budget_wait_seconds_sum", family="lambda", **where) == 0.25
    assert value(metrics, "lambda_rollouts_leader") == 1
    assert value(metrics, "lambda_rollouts_ready") == 0


def test_counters_start_at_zero_and_count() -> None:
    metrics = Metrics()
    metrics.rollout_status(SPEC, status(Phase.PROGRESSING), strategy="canary")
    for reason in ROLLBACK_REASONS:
        assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason=reason) == 0
    for kind in PROMOTION_KINDS:
        assert value(metrics, "lambda_rollouts_promotions_total", **IDENTITY, kind=kind) == 0
    assert value(metrics, "lambda_rollouts_alias_writes_total", **IDENTITY, kind="rollback") == 0
    metrics.alias_written(SPEC)
    metrics.alias_written(SPEC, rollback=True)
    assert value(metrics, "lambda_rollouts_alias_writes_total", **IDENTITY, kind="rollout") == 1
    assert value(metrics, "lambda_rollouts_alias_writes_total", **IDENTITY, kind="rollback") == 1


def test_removed_rollout_loses_every_series_and_others_stay() -> None:
    metrics = Metrics()
    for spec in (SPEC, OTHER):
        metrics.rollout_status(spec, status(Phase.PROGRESSING, weight=10), strategy="canary")
        metrics.rollout_event(spec, from_phase=Phase.HEALTHY, to_phase=Phase.PROGRESSING, reason="Started", now=0.0)
        metrics.rollout_event(spec, from_phase=Phase.PROGRESSING, to_phase=Phase.ROLLED_BACK, reason="Aborted", now=9)
        metrics.rollback_reaction(spec, seconds=1.0)
        metrics.alarm_states(spec, {"errors": "ALARM"})
        metrics.reconcile_finished(spec, seconds=0.1, error="Boom")
        metrics.alias_written(spec, rollback=True)
    metrics.api_call(service="lambda", operation="GetAlias", outcome="ok", seconds=0.01)
    assert names_with(metrics, name="checkout")

    metrics.rollout_removed(SPEC)
    metrics.rollout_removed(SPEC)  # idempotent

    assert names_with(metrics, name="checkout") == set()
    assert names_with(metrics, name="refunds") >= {
        "lambda_rollouts_rollout_info",
        "lambda_rollouts_rollbacks_total",
        "lambda_rollouts_rollback_reaction_seconds_count",
    }
    assert value(
        metrics,
        "lambda_rollouts_aws_api_calls_total",
        service="lambda",
        operation="GetAlias",
        outcome="ok",
        account="default",
        region="",
    )
    # A rollout seen again after removal starts from scratch.
    metrics.rollout_status(SPEC, status(Phase.HEALTHY), strategy="canary")
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="manual") == 0


# ---- the HTTP face: /metrics, /healthz, /readyz ------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_and_readiness_endpoints() -> None:
    clock = FakeClock()
    metrics = Metrics()
    health = Health(interval=5.0, metrics=metrics, clock=clock)

    async def scenario() -> None:
        async with (
            ObservabilityServer(metrics=metrics, health=health, host="127.0.0.1", port=0) as server,
            aiohttp.ClientSession() as http,
        ):
            assert server.port != 0

            async def get(path: str) -> tuple[int, str]:
                async with http.get(f"{server.url}{path}") as response:
                    return response.status, await response.text()

            status_code, body = await get("/metrics")
            assert status_code == 200 and "lambda_rollouts_build_info" in body

            assert (await get("/healthz"))[0] == 200
            clock.now += 15.0  # exactly three intervals: one slow tick is no reason to restart
            assert (await get("/healthz"))[0] == 200
            clock.now += 0.1
            status_code, body = await get("/healthz")
            assert status_code == 503 and json.loads(body)["status"] == "stalled"
            health.heartbeat()
            assert (await get("/healthz"))[0] == 200

            status_code, body = await get("/readyz")
            assert status_code == 503
            assert json.loads(body)["missing"] == ["sources_loaded", "aws_reachable", "leadership_known"]
            health.set_sources_loaded()
            health.set_aws_reachable()
            assert json.loads((await get("/readyz"))[1])["missing"] == ["leadership_known"]
            assert "reasons" not in json.loads((await get("/readyz"))[1])
            assert value(metrics, "lambda_rollouts_ready") == 0
            # A GitOps standby says who leads and since when.
            health.set_leadership_known(False, reason="lease default is held by h (pid 1) since T; waiting")
            status_code, body = await get("/readyz")
            assert status_code == 503
            assert json.loads(body)["reasons"] == {
                "leadership_known": "lease default is held by h (pid 1) since T; waiting"
            }
            health.set_leadership_known(reason="ignored once met")
            assert (await get("/readyz"))[0] == 200
            assert "reasons" not in json.loads((await get("/readyz"))[1])
            assert value(metrics, "lambda_rollouts_ready") == 1

    asyncio.run(scenario())


def test_unknown_readiness_condition_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown readiness condition"):
        Health(interval=1.0).set_condition("warp_drive", True)


def test_metrics_sink_derives_transitions_from_statuses() -> None:
    metrics = Metrics()
    clock = FakeClock()
    sink = MetricsSink(metrics, clock=clock)

    async def scenario() -> None:
        await sink.status_changed(spec=SPEC, status=status(Phase.HEALTHY), previous=None)
        await sink.status_changed(spec=SPEC, status=status(Phase.PROGRESSING), previous=status(Phase.HEALTHY))
        clock.now += 30
        await sink.event(spec=SPEC, event=Event(reason="Superseded", message="3 replaces 2"))
        clock.now += 20
        progressing = status(Phase.PROGRESSING)
        rolled_back = dataclasses.replace(status(Phase.ROLLED_BACK), reason="AlarmFired")
        await sink.status_changed(spec=SPEC, status=rolled_back, previous=progressing)
        await sink.event(spec=SPEC, event=Event(reason="AlarmFired", message="errors in ALARM", warning=True))

    asyncio.run(scenario())
    assert value(metrics, "lambda_rollouts_rollout_info", **IDENTITY, strategy="canary") == 1
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="supersede") == 1
    assert value(metrics, "lambda_rollouts_rollbacks_total", **IDENTITY, reason="alarm") == 1
    assert value(metrics, "lambda_rollouts_rollout_duration_seconds_sum", **IDENTITY, outcome="RolledBack") == 20
    asyncio.run(sink.removed(spec=SPEC))
    assert names_with(metrics, name="checkout") == set()


@pytest.mark.parametrize(
    ("strategy", "label"),
    [
        (CanaryStrategy(steps=(SetWeight(10),)), "canary"),
        (LinearStrategy(step_percent=10, interval=60.0), "linear"),
        (AllAtOnceStrategy(), "allAtOnce"),
        (BlueGreenStrategy(preview_alias="preview"), "blueGreen"),
        (PresetStrategy("Canary10Percent5Minutes"), "Canary10Percent5Minutes"),
    ],
)
def test_strategy_labels(strategy: Strategy, label: str) -> None:
    assert strategy_label(strategy) == label
