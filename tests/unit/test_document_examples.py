"""The shipped examples are valid and mean what their comments say; ``validate``'s exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.document.loader import load_paths
from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    LinearStrategy,
    Pause,
    PresetStrategy,
    SetWeight,
)
from tests.unit.test_document_invalid import REPO, run_validate


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate("examples/") == 0
    out, err = capsys.readouterr()
    assert err == ""
    files = sorted(path.as_posix() for path in Path("examples").rglob("*.yaml"))
    # examples/config/ holds the daemon's own config (not a rollout): listed, never skipped silently.
    expected = [
        f"{file}: no LambdaRollout documents" if file.startswith("examples/config/") else f"{file}: 1 rollout valid"
        for file in files
    ]
    assert "examples/config/ownership.yaml: no LambdaRollout documents" in expected
    assert out.splitlines() == expected


def test_validate_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate("-o", "json", "examples/canary.yaml", "tests/data/invalid/yaml-syntax.yaml") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["files"] == [
        {"file": "examples/canary.yaml", "rollouts": ["payments/brand-api"], "errors": 0},
        {"file": "tests/data/invalid/yaml-syntax.yaml", "rollouts": [], "errors": 1},
    ]
    assert report["errors"] == [
        {
            "file": "tests/data/invalid/yaml-syntax.yaml",
            "line": 9,
            "path": "yaml",
            "message": "expected ',' or ']', but got ':' (while parsing a flow sequence started at line 8)",
        }
    ]


def test_validate_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate("examples/canary.yaml", "no/such/file.yaml") == 2
    assert capsys.readouterr().err == "lambda-rollouts validate: no/such/file.yaml: no such file or directory\n"
    with pytest.raises(SystemExit) as exit_info:
        run_validate()
    assert exit_info.value.code == 2


def test_a_file_named_without_rollouts_is_an_error_but_skipped_in_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "configmap.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert run_validate(str(other)) == 1
    captured = capsys.readouterr()
    assert captured.err == f"{other.as_posix()}: no LambdaRollout document in this file\n"
    # The same file found in a directory is someone else's document: skipped, not an error.
    assert run_validate(str(tmp_path)) == 0
    assert capsys.readouterr().out == f"{other.as_posix()}: no LambdaRollout documents\n"
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert run_validate(str(empty)) == 1


def test_examples_cover_every_strategy_and_preset_family() -> None:
    specs = {Path(rollout.file).stem: rollout.spec for rollout in load_paths(["examples"]).rollouts}
    assert specs["canary"].strategy == CanaryStrategy(steps=(SetWeight(5), Pause(300.0), SetWeight(25), Pause(None)))
    assert specs["linear"].strategy == LinearStrategy(step_percent=20, interval=120.0)
    assert specs["all-at-once"].strategy == AllAtOnceStrategy()
    assert specs["blue-green"].strategy == BlueGreenStrategy("green", "previous", True, 600.0)
    assert specs["publish-by-hash"].publish is not None and specs["publish-by-hash"].version is None
    assert specs["preset-canary"].strategy == PresetStrategy("Canary10Percent5Minutes")
    assert specs["preset-linear"].strategy == PresetStrategy("Linear10PercentEvery1Minute")
    assert specs["preset-all-at-once"].strategy == PresetStrategy("AllAtOnce")
    full = specs["full"]
    assert full.concurrency is not None and full.concurrency.provisioned == 50
    assert full.async_invoke is not None and full.async_invoke.maximum_retry_attempts == 1
    assert full.hooks.before_allow_traffic is not None and full.hooks.before_allow_traffic.timeout == 120.0
    assert full.hooks.after_allow_traffic is not None and full.hooks.after_allow_traffic.url
    assert len(full.analysis.alarms) == 3
    assert full.progress_deadline == 5400.0
    error_rate, latency = specs["metrics-analysis"].analysis.metrics
    assert [q.id for q in error_rate.queries] == ["errors", "invocations"]
    assert error_rate.expression == "errors/invocations*100"
    assert (error_rate.scope, error_rate.period, error_rate.interval) == ("canary", 60.0, 60.0)
    assert error_rate.threshold is not None and error_rate.threshold.max == 2
    assert (error_rate.failure_limit, error_rate.inconclusive_limit, error_rate.min_samples) == (2, 5, 20)
    assert [(q.id, q.namespace, q.metric_name, q.stat) for q in latency.queries] == [
        ("m", "AWS/Lambda", "Duration", "p99")
    ]
    assert latency.compare_to_stable is not None and latency.compare_to_stable.max_ratio == 1.2
    assert (latency.period, latency.interval, latency.failure_limit, latency.inconclusive_limit) == (300.0, 300.0, 1, 3)


@pytest.mark.parametrize("document", ["README.md", "docs/document.md"])
def test_the_annotated_document_in_the_docs_is_valid(document: str, tmp_path: Path) -> None:
    # The first YAML block of each page is the annotated example users copy: it must stay valid.
    text = (REPO / document).read_text()
    example = text.split("```yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "annotated.yaml"
    path.write_text(example)
    result = load_paths([path])
    assert result.errors == []
    assert [rollout.spec.key for rollout in result.rollouts] == ["payments/brand-api"]
