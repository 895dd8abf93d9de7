"""Every broken document in tests/data/invalid gives exactly the lines a user would see."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from controller.commands import validate
from controller.document.documents import MAX_FILE_BYTES
from controller.document.loader import load_paths

REPO = Path(__file__).resolve().parents[2]
D = "tests/data/invalid"

EXPECTED = f"""\
{D}/duplicate-a.yaml:5: metadata.name: shop/orders is also defined at {D}/duplicate-b.yaml:14
{D}/duplicate-a.yaml:9: spec.alias: orders:prod is also rolled out by shop/orders-eu ({D}/duplicate-b.yaml:2)
{D}/duplicate-b.yaml:9: spec.alias: arn:aws:lambda:eu-west-1:123456789012:function:orders:prod is also rolled out by \
shop/orders ({D}/duplicate-a.yaml:2)
{D}/duplicate-b.yaml:17: metadata.name: shop/orders is also defined at {D}/duplicate-a.yaml:2
{D}/metrics.yaml:16: spec.analysis.metrics[0].metric.stat: 'p999.5' is not a statistic: Sum, Average, Minimum, \
Maximum, SampleCount or a percentile such as p99
{D}/metrics.yaml:17: spec.analysis.metrics[0].threshold: needs at least one of max, min
{D}/metrics.yaml:18: spec.analysis.metrics[1].name: 'error-rate' is also the name of metrics[0]
{D}/metrics.yaml:21: spec.analysis.metrics[1].queries[1].id: 'errors' is used by another query
{D}/metrics.yaml:22: spec.analysis.metrics[1].expression: unknown query id invocations (queries: errors, errors)
{D}/metrics.yaml:24: spec.analysis.metrics[1].period: '45s' is not a CloudWatch period: 1s, 5s, 10s, 30s or a \
multiple of 60s
{D}/metrics.yaml:25: spec.analysis.metrics[2]: exactly one of metric, queries is required (found metric, queries)
{D}/metrics.yaml:25: spec.analysis.metrics[2].expression: required with queries: it says how they combine
{D}/metrics.yaml:30: spec.analysis.metrics[2].compareToStable: compares the canary with stable: needs scope canary
{D}/metrics.yaml:31: spec.analysis.metrics[2].failureLimit: 0 is less than the minimum of 1
{D}/metrics.yaml:32: spec.analysis.metrics[2].interval: '0s' must be longer than 0s
{D}/metrics.yaml:33: spec.analysis.metrics[3]: needs threshold or compareToStable: a measurement must be able to fail
{D}/metrics.yaml:35: spec.analysis.metrics[3].scope: 'everywhere' is not one of canary, stable, alias
{D}/mixed-kinds.yaml:9: apiVersion: 'lambda.rollouts.dev/v1' is not supported; use lambda.rollouts.dev/v1alpha1
{D}/mixed-kinds.yaml:12: metadata.name: 'Webhook_Relay' is not a valid name (lowercase letters, digits, - and ., \
up to 253)
{D}/mixed-kinds.yaml:17: spec.alias: duplicate key (first given at line 16)
{D}/schema-exactly-one.yaml:7: spec: exactly one of version, publish is required (found version, publish)
{D}/schema-exactly-one.yaml:13: spec.strategy: exactly one of preset, canary, linear, allAtOnce, blueGreen is required \
(found canary, linear)
{D}/schema-exactly-one.yaml:17: spec.strategy.canary.steps[0]: exactly one of setWeight, pause is required \
(found setWeight, pause)
{D}/schema-exactly-one.yaml:19: spec.hooks.beforeAllowTraffic: exactly one of function, url is required \
(found function, url)
{D}/schema-exactly-one.yaml:28: spec: exactly one of version, publish is required
{D}/schema-exactly-one.yaml:32: spec.strategy.preset: 'Canary10Percent7Minutes' is not a CodeDeploy Lambda preset; \
use one of AllAtOnce, Canary10Percent5Minutes, Canary10Percent10Minutes, Canary10Percent15Minutes, \
Canary10Percent30Minutes, Linear10PercentEvery1Minute, Linear10PercentEvery2Minutes, Linear10PercentEvery3Minutes, \
Linear10PercentEvery10Minutes (optionally prefixed with Lambda or CodeDeployDefault.Lambda)
{D}/schema-missing.yaml:7: spec.alias: required field is missing
{D}/schema-missing.yaml:7: spec.functionName: required field is missing
{D}/schema-missing.yaml:10: spec.strategy.linear.interval: required field is missing
{D}/schema-missing.yaml:12: spec: required field is missing
{D}/schema-missing.yaml:14: metadata.name: required field is missing
{D}/schema-values.yaml:8: spec.functionName: 'brand api' is not a function name (letters, digits, - and _, up to 64) \
or a full function ARN without qualifier
{D}/schema-values.yaml:10: spec.version: 43 is not of type 'string' (quote it: "43")
{D}/schema-values.yaml:15: spec.strategy.canary.steps[1].pause.duration: '5 minutes' is not a duration such as 90s, \
5m, 1h30m
{D}/schema-values.yaml:16: spec.strategy.canary.steps[2].setWeight: 150 is greater than the maximum of 100
{D}/schema-values.yaml:18: spec.analysis.alarms: 'brand-api-errors' listed more than once
{D}/schema-values.yaml:20: spec.asyncInvoke.maximumRetryAttempts: 3 is greater than the maximum of 2
{D}/schema-values.yaml:21: spec.asyncInvoke.maximumEventAgeSeconds: 30 is less than the minimum of 60
{D}/schema-values.yaml:22: spec.progresDeadline: unknown field (did you mean progressDeadline?)
{D}/schema-values.yaml:23: spec.paused: 'no' is not of type 'boolean'
{D}/semantic-aliases.yaml:13: spec.strategy.blueGreen.previewAlias: must differ from spec.alias (prod)
{D}/semantic-aliases.yaml:14: spec.strategy.blueGreen.previousAlias: must differ from spec.alias (prod)
{D}/semantic-aliases.yaml:15: spec.strategy.blueGreen.autoPromoteAfter: needs autoPromote: true
{D}/semantic-aliases.yaml:18: spec.concurrency.provisioned: 20 is more than half of concurrency.reserved (10)
{D}/semantic-aliases.yaml:19: spec.progressDeadline: '0s' must be longer than 0s
{D}/semantic-aliases.yaml:28: spec.alias: $LATEST is the unpublished code, not an alias; name the alias (e.g. prod)
{D}/semantic-aliases.yaml:33: spec.strategy.blueGreen.previousAlias: must differ from previewAlias (green)
{D}/semantic-canary.yaml:14: spec.strategy.canary.steps[0].pause: a pause before the first setWeight holds no traffic; \
start with a setWeight
{D}/semantic-canary.yaml:16: spec.strategy.canary.steps[2].setWeight: 20 is lower than steps[1].setWeight (50); \
weights may not go down
{D}/semantic-canary.yaml:17: spec.strategy.canary.steps[3].setWeight: 0 sends no traffic to the new version; \
canary weights are 1-99
{D}/semantic-canary.yaml:18: spec.strategy.canary.steps[4].setWeight: 100 is not a canary step: the rollout goes to \
100% by itself after the last step (use 1-99)
{D}/sequential.yaml:16: spec.analysis.sequential[0].period: '90s' is not a CloudWatch period: 1s, 5s, 10s, 30s or a \
multiple of 60s
{D}/sequential.yaml:17: spec.analysis.sequential[0].confidence: 1 is greater than the maximum of 0.9999
{D}/sequential.yaml:18: spec.analysis.sequential[1].name: 'errors' is also the name of sequential[0]
{D}/sequential.yaml:19: spec.analysis.sequential[1].failures.metricName: required field is missing
{D}/sequential.yaml:20: spec.analysis.sequential[1].dimensions: must not name versionDimension (ExecutedVersion), \
which is set to each version
{D}/sequential.yaml:21: spec.analysis.sequential[1].maxIncrease: -0.5 is less than the minimum of 0
{D}/sequential.yaml:22: spec.analysis.sequential[1].publicationDelay: 'soon' is not a duration such as 90s, 5m, 1h30m
{D}/sequential.yaml:36: spec.analysis.sequential: blueGreen gives the new version no partial traffic to compare with \
stable
{D}/sequential.yaml:52: spec.analysis.promoteEarly: needs analysis.sequential: without a test nothing can prove \
"no regression"
{D}/yaml-syntax.yaml:9: yaml: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 8)
""".splitlines()


def run_validate(*argv: str) -> int:
    """The verb as the CLI wires it, without importing every other verb's module."""
    parser = argparse.ArgumentParser(prog="lambda-rollouts validate")
    validate.add_arguments(parser)
    return validate.run(parser.parse_args(argv))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    # File names in messages are the paths as given, so run from the repository root.
    monkeypatch.chdir(REPO)


def test_every_error_line_exactly() -> None:
    result = load_paths([D])
    assert [str(error) for error in result.errors] == EXPECTED
    assert result.rollouts == []


def test_every_invalid_file_has_errors() -> None:
    result = load_paths([D])
    assert sorted(result.errors_by_file) == sorted(result.files)


def test_validate_prints_the_same_lines_on_stderr_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_validate(D) == 1
    out, err = capsys.readouterr()
    assert err.splitlines() == EXPECTED
    assert f"{D}/schema-values.yaml: 9 errors" in out.splitlines()


def test_a_duplicate_is_only_an_error_when_both_files_are_loaded() -> None:
    assert load_paths([f"{D}/duplicate-a.yaml"]).ok


def test_oversize_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    result = load_paths([big])
    assert [str(error) for error in result.errors] == [
        f"{big.as_posix()}: file is larger than the limit of 1048576 bytes (1 MiB)"
    ]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"kind: LambdaRollout\nname: caf\xe9\n")
    assert [str(error) for error in load_paths([bad]).errors] == [f"{bad.as_posix()}: file is not UTF-8 text (byte 29)"]


def test_alias_bomb_is_refused_cheaply(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nkind: LambdaRollout\n")
    (error,) = load_paths([bomb]).errors
    assert error.path == "yaml"
    assert "more than 100000 nodes" in error.message
