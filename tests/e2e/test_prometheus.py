"""The dashboard and the alerts, proven against a real Prometheus.

- ``promtool check rules`` and ``promtool test rules`` on the PrometheusRule's groups: each alert
  fires on a synthetic series (``manifests/prometheus/rules.test.yaml``).
- A Prometheus server scrapes the controller's ``/metrics`` after a promotion and a rollback; then
  every PromQL expression of the Grafana dashboard and of the rule file must parse and return at
  least one series. Alert expressions return data only while their condition holds, so the
  scenario makes each condition true in turn (a rolled-back and a stuck rollout, sustained
  throttling, leadership lost, and last the controller stopped) and polls until the series appear.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.core.types import Phase, Status
from controller.observability.http import Health, ObservabilityServer
from controller.observability.metrics import Metrics, MetricsSink
from controller.spec.model import Analysis, CanaryStrategy, Pause, RolloutSpec, SetWeight

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "grafana" / "lambda-rollouts.json"
PROMETHEUS_RULE = REPO / "manifests" / "prometheusrule.yaml"
RULES_TEST = REPO / "manifests" / "prometheus" / "rules.test.yaml"

# Grafana's built-in interval variables, as Grafana would substitute them for a 1 s scrape interval.
GRAFANA_INTERVALS = {"__rate_interval": "30s", "__interval": "15s", "__range": "1h"}
# Alerts that can only fire once the controller is in a state the other queries must not see.
LATE_ALERTS = ("LambdaRolloutsNotLeading", "LambdaRolloutsControllerDown")


# ---- the expressions under test -------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def substitute(expr: str) -> str:
    """Replace dashboard variables: Grafana's intervals by durations, the rollout selectors by ``.*``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return GRAFANA_INTERVALS.get(name, ".*")

    substituted = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)
    assert "$" not in substituted, expr
    return substituted


def dashboard_expressions() -> dict[str, str]:
    """Title -> PromQL for every target of every panel, plus the metric selectors of query variables."""
    found: dict[str, str] = {}
    for panel in panels(dashboard()["panels"]):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} {target['refId']}"] = substitute(target["expr"])
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(SELECTOR, label) is Grafana's, not PromQL: the selector must return series.
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert match, variable["definition"]
            found[f"variable {variable['name']}"] = substitute(match.group(1))
    return found


def rule_groups() -> list[dict[str, Any]]:
    return list(yaml.safe_load(PROMETHEUS_RULE.read_text())["spec"]["groups"])


def alert_expressions() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in rule_groups() for rule in group["rules"] if "alert" in rule}


# ---- static checks ----------------------------------------------------------------------------------


def test_promtool_checks_and_unit_tests_the_rules(rules_dir: Path, promtool: str) -> None:
    check = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=rules_dir, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([promtool, "test", "rules", RULES_TEST.name], cwd=rules_dir, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_documented_and_proven_to_fire() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    for group in rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            assert rule["alert"] in fired, f"{rule['alert']} has no promtool test in which it fires"


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["rollout"]["type"] == "query"
    ids = [panel["id"] for panel in panels(board["panels"])]
    assert len(ids) == len(set(ids))
    for panel in panels(board["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"].lower() for panel in panels(board["panels"]))
    wanted = ["phase", "canary weight", "step", "rollbacks by reason", "rollout duration", "reaction"]
    wanted += ["aws api calls", "throttles", "budget wait", "reconcile latency", "errors"]
    for title in wanted:
        assert title in titles, title


# ---- the controller side: a Metrics object fed through its public methods, served over HTTP ----------


def rollout(name: str, *steps: SetWeight | Pause) -> RolloutSpec:
    return RolloutSpec(
        namespace="shop",
        name=name,
        function_name=f"{name}-fn",
        alias="live",
        strategy=CanaryStrategy(steps),
        analysis=Analysis(alarms=("errors",)),
        progress_deadline=600.0,
    )


PROMOTED = rollout("checkout", SetWeight(10), Pause(60.0), SetWeight(50))
ROLLED_BACK = rollout("refunds", SetWeight(20))
STUCK = rollout("quotes", SetWeight(20), Pause())


def status(phase: Phase, *, weight: int, step: int, stable: str, canary: str | None, started: float) -> Status:
    return Status(
        phase=phase,
        stable_version=stable,
        canary_version=canary,
        canary_weight=weight,
        current_step=step,
        steps=3,
        step_started_at=started,
        message="",
        reason="",
    )


class ServedMetrics:
    """``ObservabilityServer`` on its own event loop in a thread, so the test can feed and query synchronously."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.health = Health(interval=1.0, metrics=self.metrics)
        self.sink = MetricsSink(self.metrics)
        self.server = ObservabilityServer(metrics=self.metrics, health=self.health, host="127.0.0.1", port=0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self.server.start())

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if self._loop.is_running():
            self.run(self.server.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


@pytest.fixture
def controller() -> Iterator[ServedMetrics]:
    served = ServedMetrics()
    try:
        yield served
    finally:
        served.stop()


def aws_traffic(metrics: Metrics, *, throttled: int) -> None:
    """AWS calls as the adapters report them; ``throttled`` of the UpdateAlias calls were throttled."""
    for _ in range(5):
        metrics.api_call(service="lambda", operation="GetAlias", outcome="ok", seconds=0.003)
        metrics.api_call(service="cloudwatch", operation="DescribeAlarms", outcome="ok", seconds=0.004)
    metrics.api_call(service="lambda", operation="UpdateAlias", outcome="ok", seconds=0.01)
    for _ in range(throttled):
        metrics.api_call(service="lambda", operation="UpdateAlias", outcome="throttled", seconds=0.02)
    metrics.budget_wait(family="lambda", seconds=0.2)


def start_rollouts(served: ServedMetrics, now: float) -> None:
    """Before the first scrape: three rollouts under way, the controller leading and ready."""
    metrics, sink = served.metrics, served.sink
    healthy = status(Phase.HEALTHY, weight=0, step=0, stable="1", canary=None, started=now - 600)
    for spec in (PROMOTED, ROLLED_BACK):
        served.run(sink.status_changed(spec=spec, status=healthy, previous=None))
    # Stuck: Progressing on a step that began two hours ago, far past its 600 s deadline.
    stuck = status(Phase.PROGRESSING, weight=20, step=1, stable="1", canary="2", started=now - 7200)
    served.run(sink.status_changed(spec=STUCK, status=stuck, previous=None))
    for spec in (PROMOTED, ROLLED_BACK, STUCK):
        metrics.alarm_states(spec, {"errors": "OK"})
        metrics.reconcile_finished(spec, seconds=0.02, error=None)
    metrics.reconcile_finished(STUCK, seconds=0.5, error="ThrottlingException")
    aws_traffic(metrics, throttled=1)
    metrics.set_leader(True)
    served.health.set_sources_loaded()
    served.health.set_aws_reachable()
    served.health.set_leadership_known()
    served.health.heartbeat()


def drive(served: ServedMetrics, now: float) -> None:
    """After the first scrape: one canary promoted step by step, one rolled back by an alarm."""
    metrics, sink = served.metrics, served.sink

    def step(spec: RolloutSpec, new: Status, old: Status) -> None:
        served.run(sink.status_changed(spec=spec, status=new, previous=old))

    healthy = status(Phase.HEALTHY, weight=0, step=0, stable="1", canary=None, started=now - 600)
    at_10 = status(Phase.PROGRESSING, weight=10, step=1, stable="1", canary="2", started=now)
    paused = status(Phase.PAUSED, weight=10, step=2, stable="1", canary="2", started=now)
    at_50 = status(Phase.PROGRESSING, weight=50, step=3, stable="1", canary="2", started=now)
    promoted = replace(
        at_50, phase=Phase.HEALTHY, stable_version="2", canary_version=None, canary_weight=0, reason="Promoted"
    )
    for new, old in ((at_10, healthy), (paused, at_10), (at_50, paused), (promoted, at_50)):
        step(PROMOTED, new, old)
        metrics.alias_written(PROMOTED)

    step(ROLLED_BACK, at_10, healthy)
    metrics.alias_written(ROLLED_BACK)
    metrics.alarm_states(ROLLED_BACK, {"errors": "ALARM"})
    rolled_back = replace(at_10, phase=Phase.ROLLED_BACK, canary_weight=0, reason="AlarmFired")
    step(ROLLED_BACK, rolled_back, at_10)
    metrics.alias_written(ROLLED_BACK, rollback=True)
    metrics.rollback_reaction(ROLLED_BACK, seconds=1.3)

    for spec in (PROMOTED, ROLLED_BACK, STUCK):
        metrics.reconcile_finished(spec, seconds=0.03, error=None)
    metrics.reconcile_finished(STUCK, seconds=0.6, error="ThrottlingException")
    # Sustained throttling: a third of UpdateAlias calls throttled since the first scrape.
    aws_traffic(metrics, throttled=20)
    served.health.heartbeat()


def test_every_dashboard_and_alert_query_returns_data(
    controller: ServedMetrics, prometheus: Callable[[list[str]], Any]
) -> None:
    start_rollouts(controller, time.time())
    server = prometheus([controller.target])
    assert server.wait_for_series('lambda_rollouts_build_info{job="lambda-rollouts"}', timeout=60), (
        "Prometheus never scraped the controller"
    )
    drive(controller, time.time())
    # The driven transitions are visible once a scrape after them has landed.
    assert server.wait_for_series('lambda_rollouts_rollout_phase{name="refunds", phase="RolledBack"} == 1')

    loaded = {rule["name"] for group in server.rules() for rule in group["rules"]}
    assert set(alert_expressions()) <= loaded, "Prometheus did not load every alert rule"

    queries = dashboard_expressions()
    alerts = alert_expressions()
    queries.update({f"alert {name}": expr for name, expr in alerts.items() if name not in LATE_ALERTS})
    problems = {title: problem for title, expr in queries.items() if (problem := server.problem(expr)) is not None}
    assert not problems, json.dumps(problems, indent=2)

    controller.metrics.set_leader(False)
    assert server.problem(alerts["LambdaRolloutsNotLeading"]) is None
    controller.stop()
    assert server.problem(alerts["LambdaRolloutsControllerDown"]) is None
