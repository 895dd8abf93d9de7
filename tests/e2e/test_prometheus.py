"""The dashboard and the alerts, proven against a real Prometheus.

- ``promtool check rules`` and ``promtool test rules`` on the PrometheusRule's groups: each alert
  fires on a synthetic series (``manifests/prometheus/rules.test.yaml``).
- A Prometheus server scrapes the real controller (``lambda-rollouts run --metrics-port``, a
  subprocess, against the strict emulator behind the fault proxy) while it drives one promotion, one
  alarm rollback and a sequential test gathering evidence; then every PromQL expression of the Grafana
  dashboard and of the rule file must parse and return at least one series. Alert expressions return
  data only while their condition holds, so the scenario makes each condition true for real: a
  rolled-back rollout, a rollout stuck past its deadline while AWS throttles its alias writes
  (sustained throttling and reconcile errors), the alarm-events queue deleted under it (push mode
  down), then the controller stopped. "Not leading" needs a replica that is up but not leading, which
  only the operator has: a standby's ``/metrics`` (see ``Standby``) stands in for it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from controller.observability.http import Health, ObservabilityServer
from controller.observability.prometheus import Metrics
from tests.integration.helpers import (
    CLI,
    alias_routing,
    canary,
    cli_env,
    platform_queue,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    write_document,
)

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


def substitute(expr: str, **intervals: str) -> str:
    """Replace dashboard variables: Grafana's intervals by durations, the rollout selectors by ``.*``.

    ``label_replace``'s ``$1`` is PromQL's own and stays (Grafana leaves unknown names alone too).
    """
    variables = {**GRAFANA_INTERVALS, **intervals, "namespace": ".*", "rollout": ".*"}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    substituted = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)
    assert not re.search(r"\$\{?[A-Za-z_]", substituted), f"unknown variable in {expr}"
    return substituted


def panel_titled(title: str) -> dict[str, Any]:
    (panel,) = [panel for panel in panels(dashboard()["panels"]) if panel["title"] == title]
    return panel


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
    wanted += ["aws api calls", "throttles", "budget wait", "reconcile latency", "errors", "sequential evidence"]
    for title in wanted:
        assert title in titles, title


def test_current_rollouts_is_one_table_merged_on_the_rollout_labels() -> None:
    panel = panel_titled("Current rollouts")
    assert [step["id"] for step in panel["transformations"]][:1] == ["merge"]
    for target in panel["targets"]:
        assert target["instant"] and target["format"] == "table", target["refId"]
        # Every query keeps exactly the rollout's labels (plus its own columns), so merge joins them.
        assert "max by (namespace, name, function, alias" in target["expr"], target["refId"]


def test_range_panels_count_rare_events_born_inside_the_range(tmp_path: Path, promtool: str) -> None:
    """The reaction-time p99 over the dashboard range, per source, evaluated by promtool on synthetic histograms.

    ``increase()`` alone misses the first observation of a series that appears already at 1 (a
    rollout's first rollback), so the panels count such a series whole; an older series counts only
    its increase. With no rollback in the range the panel gets no series ("no rollbacks in range").
    """
    expr = substitute(panel_titled("Rollback reaction time")["targets"][0]["expr"], __range="1h")
    series = {
        # First rollback of rollout a at 90m, 1-2 s.
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="a", source="poll", le="1"}': "_x90 0x40",
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="a", source="poll", le="2"}': "_x90 1x40",
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="a", source="poll", le="+Inf"}': "_x90 1x40",
        # Rollout b: three fast rollbacks long ago, one of 1-2 s at 100m.
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="b", source="poll", le="1"}': "3x130",
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="b", source="poll", le="2"}': "3x100 4x30",
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="b", source="poll", le="+Inf"}': "3x100 4x30",
        # Rollout c, pushed: one rollback within 0.1 s long ago, one at 110m; a source of its own.
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="c", source="event", le="0.1"}': "1x110 2x20",
        'lambda_rollouts_rollback_reaction_seconds_bucket{name="c", source="event", le="+Inf"}': "1x110 2x20",
    }
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "promql_expr_test": [
                    # Two polled rollbacks in the last hour, both in (1, 2]: p99 = 1 + 0.99 * 2 / 2; one
                    # pushed, in (0, 0.1]: p99 = 0.099.
                    {
                        "expr": expr,
                        "eval_time": "120m",
                        "exp_samples": [
                            {"labels": '{source="poll"}', "value": 1.99},
                            {"labels": '{source="event"}', "value": 0.099},
                        ],
                    },
                    # In the hour up to 89m no rollback happened: no series (not NaN).
                    {"expr": expr, "eval_time": "89m", "exp_samples": []},
                ],
            }
        ],
    }
    (tmp_path / "rules.yaml").write_text("groups: []\n")
    test_file = tmp_path / "panel.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = subprocess.run([promtool, "test", "rules", test_file.name], cwd=tmp_path, capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ---- the controller side: the real daemon against the strict emulator ---------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)
    yield emu
    emu.stop()


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    """The emulator behind the fault proxy, so AWS throttling is real throttling on the wire."""
    emulator.reset()
    with FaultProxy.start(upstream=emulator.url, seed=1) as running:
        yield running


class Controller:
    """``lambda-rollouts run --source DIR --metrics-port P [--accounts FILE]`` as a subprocess."""

    def __init__(self, source: Path, aws_url: str, log: Path, *, port: int, extra: tuple[str, ...] = ()) -> None:
        self.port = port
        args = [*CLI, "run", "--source", str(source), "--interval", "0.1", "--log-format", "json"]
        args += ["--metrics-port", str(self.port), "--aws-endpoint-url", aws_url, "--region", "us-east-1", *extra]
        self._log = log.open("wb")
        self.process = subprocess.Popen(args, env=cli_env(None), stdout=self._log, stderr=subprocess.STDOUT)
        self.log = log

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Standby:
    """A standby replica's ``/metrics``: only the operator has one, and ``run`` (one replica) always leads.

    The real ``Metrics`` and HTTP server, on their own event loop in a thread, reporting what a
    standby operator reports (``lambda_rollouts_leader 0``, no rollouts). With it in the job, stopping
    the real controller leaves replicas up but none leading: the ``LambdaRolloutsNotLeading``
    condition, which a single ``run`` process cannot produce (a Kubernetes API server would be
    needed for a real operator pair); stopping it too makes ``LambdaRolloutsControllerDown`` true.
    """

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.metrics.set_leader(False)
        self.health = Health(interval=1.0, metrics=self.metrics)
        self.server = ObservabilityServer(metrics=self.metrics, health=self.health, host="127.0.0.1", port=0)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def wait_until(check: Callable[[], bool], what: str, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed(emulator: Emulator, function: str, *, alarm: str | None = None) -> None:
    seed_alias(emulator, function)
    if alarm is not None:
        # Moved only by hand: the emulator's evaluation (at CloudWatch's minute boundaries here)
        # leaves a hand-set ALARM in place until the scrapes have seen it.
        put_hand_alarm(emulator.client("cloudwatch"), alarm)


def document(name: str, version: str, strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = rollout_document(name, function=name, version=version, strategy=strategy, namespace="shop")
    body["spec"].update(spec)
    return body


def merged_table(server: Any, panel: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """The table Grafana's merge builds from the panel's queries: one row per rollout's label set.

    A row holds the labels of every query and each query's value under its refId; a query whose
    labels did not line up with the others would add rows instead of columns.
    """
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for target in panel["targets"]:
        for sample in server.query(substitute(target["expr"])):
            labels = {k: v for k, v in sample["metric"].items() if k != "job" and k != "instance"}
            key = tuple(labels.pop(label) for label in ("namespace", "name", "function", "alias"))
            row = rows.setdefault(key, {})
            row.update(labels)
            row[target["refId"]] = float(sample["value"][1])
    return rows


def test_every_dashboard_and_alert_query_returns_data(
    emulator: Emulator, proxy: FaultProxy, tmp_path: Path, metrics_port: int, prometheus: Callable[[list[str]], Any]
) -> None:
    source = tmp_path / "rollouts"
    source.mkdir()
    seed(emulator, "checkout", alarm="checkout-errors")
    seed(emulator, "refunds", alarm="refunds-errors")
    seed(emulator, "quotes")
    seed(emulator, "returns")
    seed(emulator, "ledger")
    promoted = canary(10, 1, 50, 1)
    watched = canary(20, None)
    # A timed pause longer than its 1 s deadline (allowed: the pause is the step's own time) keeps it
    # Progressing on an old step, which is what the Stuck alert looks for.
    slow = canary(20, 2, 50)
    write_document(source, document("checkout", "1", promoted, analysis={"alarms": ["checkout-errors"]}))
    write_document(source, document("refunds", "1", watched, analysis={"alarms": ["refunds-errors"]}))
    write_document(source, document("quotes", "1", slow, progressDeadline="1s"))
    # A rollout of a function that does not exist: Invalid from the start, for LambdaRolloutInvalid.
    write_document(source, document("ghost", "2", canary(10, None)))
    # One whose document will be deleted while it waits at 20%: Orphaned, for LambdaRolloutOrphaned.
    returns = write_document(source, document("returns", "2", watched))
    # One judged by a sequential test on Lambda's own metrics (one-second periods: the emulator keeps
    # them per tenth of a second), waiting at 10% for `promote`: its evidence for the panel.
    judged = {"sequential": [{"name": "errors", "period": "1s", "publicationDelay": "0s"}]}
    write_document(source, document("ledger", "1", watched, analysis=judged))

    # A 0.1 s tick asks for shared reads faster than the API budget allows: budget waits are real too.
    # Another account whose role does not exist: its credentials never work (LambdaRolloutsAccountUnreachable).
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("far:\n  roleArn: arn:aws:iam::222222222222:role/nobody\n")
    # Push mode on a queue of the platform team's, which is deleted at the end (alarm events down).
    queue = platform_queue(emulator, "platform-alarm-events")
    extra = ("--accounts", str(accounts), "--alarm-events", queue, "--alarm-events-wait", "1")
    controller = Controller(source, proxy.url, tmp_path / "controller.log", port=metrics_port, extra=extra)
    standby = Standby()
    try:
        server = prometheus([controller.target, standby.target])
        first = 'lambda_rollouts_rollout_phase{name="quotes", phase="Healthy", job="lambda-rollouts"} == 1'
        assert server.wait_for_series(first, timeout=60), (
            f"Prometheus never scraped the adopted rollouts:\n{controller.log.read_text()[-3000:]}"
        )

        # One promotion, one alarm rollback: real transitions seen by a scrape before and after.
        write_document(source, document("checkout", "2", promoted, analysis={"alarms": ["checkout-errors"]}))
        write_document(source, document("refunds", "2", watched, analysis={"alarms": ["refunds-errors"]}))
        write_document(source, document("ledger", "2", watched, analysis=judged))
        wait_until(lambda: alias_routing(emulator, "refunds", "live") == ("1", {"2": 0.2}), "refunds at 20%")
        wait_until(lambda: alias_routing(emulator, "ledger", "live") == ("1", {"2": 0.2}), "ledger at 20%")
        emulator.traffic("ledger", "live", count=500)  # clients: Lambda's metrics per version
        cloudwatch = emulator.client("cloudwatch")
        cloudwatch.set_alarm_state(AlarmName="refunds-errors", StateValue="ALARM", StateReason="errors on the canary")
        wait_until(lambda: alias_routing(emulator, "refunds", "live") == ("1", {}), "refunds rolled back")
        wait_until(lambda: alias_routing(emulator, "checkout", "live") == ("2", {}), "checkout promoted")
        wait_until(lambda: alias_routing(emulator, "returns", "live") == ("1", {"2": 0.2}), "returns at 20%")
        returns.unlink()

        # Then a rollout whose next alias write AWS keeps throttling: stuck, with reconcile errors.
        write_document(source, document("quotes", "2", slow, progressDeadline="1s"))
        wait_until(lambda: alias_routing(emulator, "quotes", "live") == ("1", {"2": 0.2}), "quotes at 20%")
        proxy.set_rules([FaultRule(action="throttle", service="lambda", operation="UpdateAlias")])
        # And the alarm-events queue goes away: the leader degrades to polling.
        assert server.wait_for_series('lambda_rollouts_alarm_events_up{mode="queue"} == 1')
        emulator.client("sqs").delete_queue(QueueUrl=queue)

        for expr in (
            'lambda_rollouts_rollout_phase{name="refunds", phase="RolledBack"} == 1',
            'lambda_rollouts_promotions_total{name="checkout", kind="auto"} > 0',
            'lambda_rollouts_rollbacks_total{name="refunds", reason="alarm"} > 0',
            'lambda_rollouts_rollback_reaction_seconds_count{name="refunds"} > 0',
            # The watched alarm's series (which state it shows depends on which reconcile the scrape
            # followed: an event's rollback may come before any poll saw the ALARM).
            'lambda_rollouts_alarm_state{name="refunds", alarm="refunds-errors"} == 1',
            'lambda_rollouts_reconcile_errors_total{name="quotes"} > 0',
            'lambda_rollouts_aws_api_calls_total{operation="UpdateAlias", outcome="throttled"} > 0',
            'lambda_rollouts_rollout_phase{name="ghost", phase="Invalid"} == 1',
            'lambda_rollouts_rollout_orphaned{name="returns"} == 1',
            'lambda_rollouts_aws_credentials_available{account="222222222222"} == 0',
            'lambda_rollouts_analysis_evidence{name="ledger", test="errors", hypothesis="regression"}',
            'lambda_rollouts_alarm_events_up{mode="queue"} == 0',
            'lambda_rollouts_alarm_event_mismatch_total{kind="poll_only"} >= 0',
        ):
            assert server.wait_for_series(expr), f"{expr}: no series\n{controller.log.read_text()[-3000:]}"

        loaded = {rule["name"] for group in server.rules() for rule in group["rules"]}
        assert set(alert_expressions()) <= loaded, "Prometheus did not load every alert rule"
        queries = dashboard_expressions()
        alerts = alert_expressions()
        now = {name: expr for name, expr in alerts.items() if name not in LATE_ALERTS}
        queries.update({f"alert {name}": expr for name, expr in now.items()})
        problems = {title: problem for title, expr in queries.items() if (problem := server.problem(expr)) is not None}
        assert not problems, json.dumps(problems, indent=2)

        rows = merged_table(server, panel_titled("Current rollouts"))
        assert {key[1] for key in rows} == {"checkout", "refunds", "quotes", "ghost", "returns", "ledger"}
        quotes = rows["shop", "quotes", "quotes", "live"]
        assert (quotes["phase"], quotes["stable"], quotes["canary"], quotes["B"]) == ("Progressing", "1", "2", 20)
        assert {"strategy", "C", "D"} <= set(quotes)
        assert rows["shop", "refunds", "refunds", "live"]["phase"] == "RolledBack"

        # The leading controller goes away; the standby is still up and not leading.
        controller.stop()
        assert controller.process.returncode == 0
        assert server.problem(alerts["LambdaRolloutsNotLeading"]) is None
        standby.stop()
        assert server.problem(alerts["LambdaRolloutsControllerDown"]) is None
    finally:
        controller.stop()
        standby.stop()
