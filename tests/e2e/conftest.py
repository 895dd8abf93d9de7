"""Fixtures for end-to-end tests that run real servers: the Debian Prometheus and promtool binaries.

A missing binary is a failure, never a skip: CI installs the ``prometheus`` package, and a test that
silently skipped would let a broken dashboard query ship.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_RULE = REPO / "manifests" / "prometheusrule.yaml"
RULES_TEST = REPO / "manifests" / "prometheus" / "rules.test.yaml"
JOB = "lambda-rollouts"  # the job name the alert rules select on


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name!r} is not on PATH: install the Debian 'prometheus' package "
            "(apt-get install --no-install-recommends prometheus), as .ci/run does",
            pytrace=False,
        )
    return path


def write_rules_file(directory: Path) -> Path:
    """The PrometheusRule's ``groups`` as a plain rules file, as the Prometheus Operator would load them."""
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A folder with ``rules.yaml`` (extracted from the PrometheusRule) and the promtool test file beside it."""
    write_rules_file(tmp_path)
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    return tmp_path


class QueryError(Exception):
    """Prometheus refused a query (a parse or evaluation error): polling again would not help."""


class Prometheus:
    """A running Prometheus server and the HTTP API calls the tests need."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant query; raise ``QueryError`` when Prometheus rejects it."""
        params = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read() or b"{}")
            raise QueryError(f"{detail.get('errorType')}: {detail.get('error')}") from None
        if body.get("status") != "success":
            raise QueryError(str(body))
        return list(body["data"]["result"])

    def wait_for_series(self, expr: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns at least one series; return [] if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.25)  # polling cadence, not a wait for some assumed duration

    def problem(self, expr: str, *, timeout: float = 30.0) -> str | None:
        """None when ``expr`` parses and returns at least one series (polled), else what went wrong."""
        try:
            return None if self.wait_for_series(expr, timeout=timeout) else "returned no series"
        except QueryError as error:
            return f"rejected: {error}"

    def rules(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/rules", timeout=10) as response:
            return list(json.load(response)["data"]["groups"])


@pytest.fixture
def metrics_port() -> int:
    """A free port for a controller's ``--metrics-port``."""
    return free_port()


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Prometheus]]:
    """Start the Debian Prometheus scraping the given ``host:port`` targets every second, with the rules loaded."""
    binary = require_binary("prometheus")
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        rules = write_rules_file(tmp_path)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            # honor_labels: the controller's own namespace/name labels describe rollouts, and must not
            # be renamed to exported_* by target labels (set the same on the ServiceMonitor).
            "scrape_configs": [{"job_name": JOB, "honor_labels": True, "static_configs": [{"targets": targets}]}],
        }
        config_file = tmp_path / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as log_stream:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log_stream,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", process, log)
        started.append(server)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited at start-up:\n{log.read_text()[-3000:]}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return server
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after 30s:\n{log.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.1)

    try:
        yield start
    finally:
        for server in started:
            server.process.terminate()
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
