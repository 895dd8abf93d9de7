"""Loading: line numbers, multi-document files, directories, Kubernetes objects, cross-file checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from controller.document.documents import parse_documents
from controller.document.errors import SpecError, format_path
from controller.document.loader import Claim, FileCache, alias_conflicts, load_paths, parse_rollout
from controller.document.model import CanaryStrategy, Pause, SetWeight

ROLLOUT = """\
apiVersion: lambda.rollouts.dev/v1alpha1
kind: LambdaRollout
metadata:
  name: {name}
spec:
  functionName: {function}
  alias: prod
  version: "3"
  strategy:
    canary:
      steps:
        - setWeight: 10
        - pause: {{duration: 90s}}
"""

OBJECT: dict[str, Any] = {
    "apiVersion": "lambda.rollouts.dev/v1alpha1",
    "kind": "LambdaRollout",
    "metadata": {"name": "brand-api", "namespace": "payments", "generation": 7},
    "spec": {
        "functionName": "brand-api",
        "alias": "prod",
        "version": "43",
        "strategy": {"canary": {"steps": [{"setWeight": 5}, {"pause": {"duration": "5m"}}]}},
    },
    # Written by the controller; never a reason to refuse the spec, even when odd.
    "status": {"phase": "Healthy", "canaryWeight": 250, "whatever": True},
}


def rollout(name: str = "brand-api", function: str = "brand-api") -> str:
    return ROLLOUT.format(name=name, function=function)


def test_format_path() -> None:
    assert format_path(("spec", "strategy", "canary", "steps", 2, "setWeight")) == (
        "spec.strategy.canary.steps[2].setWeight"
    )
    assert format_path(()) == ""


def test_spec_error_text() -> None:
    assert str(SpecError("a.yaml", 3, "spec.alias", "bad")) == "a.yaml:3: spec.alias: bad"
    assert str(SpecError("<resource>", 0, "spec.alias", "bad")) == "<resource>: spec.alias: bad"
    assert str(SpecError("a.yaml", 0, "", "too big")) == "a.yaml: too big"


def test_line_of_every_key_and_item() -> None:
    (document,) = parse_documents("# comment\n---\n" + rollout())
    index = document.index
    assert index.start == 3
    assert index.line_for(("spec",)) == 7
    assert index.line_for(("spec", "strategy", "canary", "steps", 0)) == 14
    assert index.line_for(("spec", "strategy", "canary", "steps", 1, "pause", "duration")) == 15
    # A path that does not exist (a missing field) falls back to its nearest ancestor.
    assert index.line_for(("spec", "strategy", "canary", "steps", 1, "pause", "nope")) == 15
    assert index.line_for(("nope",)) == 3


def test_multi_document_lines_and_other_kinds_skipped(tmp_path: Path) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n" + rollout() + "---\n" + rollout("second", "f2")
    (tmp_path / "two.yaml").write_text(text)
    result = load_paths([tmp_path])
    assert result.ok
    assert [(item.spec.name, item.line) for item in result.rollouts] == [("brand-api", 5), ("second", 19)]
    first = result.rollouts[0]
    assert first.spec.namespace == "default"
    assert first.spec.strategy == CanaryStrategy(steps=(SetWeight(10), Pause(90.0)))
    assert first.document["metadata"] == {"name": "brand-api"}


def test_directories_recursive_sorted_hidden_skipped(tmp_path: Path) -> None:
    for relative, name in [("b.yaml", "b"), ("a/z.yml", "z"), ("a/c.yaml", "c"), (".git/x.yaml", "hidden")]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rollout(name, name))
    (tmp_path / "notes.txt").write_text("not yaml")
    result = load_paths([tmp_path, tmp_path / "b.yaml"])
    base = tmp_path.as_posix()
    assert result.files == [f"{base}/a/c.yaml", f"{base}/a/z.yml", f"{base}/b.yaml"]
    assert [item.spec.name for item in result.rollouts] == ["c", "z", "b"]


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    result = load_paths([tmp_path / "nope"])
    assert [str(error) for error in result.errors] == [f"{(tmp_path / 'nope').as_posix()}: no such file or directory"]


def test_broken_file_keeps_its_valid_documents_and_is_named(tmp_path: Path) -> None:
    good, broken = tmp_path / "good.yaml", tmp_path / "broken.yaml"
    good.write_text(rollout("one", "f1"))
    broken.write_text(rollout("two", "f2") + "---\n" + rollout("three", "f3").replace('"3"', "3"))
    result = load_paths([tmp_path])
    assert list(result.errors_by_file) == [broken.as_posix()]
    assert [item.spec.name for item in result.rollouts_in(broken.as_posix())] == ["two"]
    assert [item.spec.name for item in result.rollouts] == ["two", "one"]


def test_duplicates_are_left_out_on_both_sides(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(rollout("a", "orders"))
    (tmp_path / "b.yaml").write_text(rollout("b", "orders"))
    (tmp_path / "c.yaml").write_text(rollout("c", "arn:aws:lambda:us-east-1:123456789012:function:orders-2"))
    (tmp_path / "d.yaml").write_text(rollout("d", "arn:aws:lambda:eu-west-1:123456789012:function:orders-2"))
    result = load_paths([tmp_path])
    # Two different ARNs with one name are two functions; a bare name may be either.
    assert [item.spec.name for item in result.rollouts] == ["c", "d"]
    assert [(Path(error.file).name, error.line, error.path) for error in result.errors] == [
        ("a.yaml", 7, "spec.alias"),
        ("b.yaml", 7, "spec.alias"),
    ]


def test_a_cache_parses_only_the_files_whose_text_changed(tmp_path: Path) -> None:
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(rollout("one", "f1"))
    two.write_text(rollout("two", "f2"))
    cache = FileCache()
    first = {item.spec.name: item.spec for item in load_paths([tmp_path], cache=cache).rollouts}
    two.write_text(rollout("two", "f2").replace('"3"', '"4"'))  # same size: only the text tells
    second = {item.spec.name: item.spec for item in load_paths([tmp_path], cache=cache).rollouts}
    assert second["one"] is first["one"]  # not parsed again: the very same spec
    assert second["two"].version == "4"
    # The cache changes no outcome: cross-file checks still see every file, cached or not.
    (tmp_path / "three.yaml").write_text(rollout("three", "f1"))
    third = load_paths([tmp_path], cache=cache)
    assert [item.spec.name for item in third.rollouts] == ["two"]
    assert {Path(error.file).name for error in third.errors} == {"one.yaml", "three.yaml"}
    one.unlink()
    assert [item.spec.name for item in load_paths([tmp_path], cache=cache).rollouts] == ["three", "two"]


def test_alias_conflicts_name_both_sides() -> None:
    claims = [
        Claim("payments/brand-api", "brand-api", "prod", "payments/brand-api"),
        Claim("payments/brand-api-2", "arn:aws:lambda:eu-west-1:123456789012:function:brand-api", "prod", "b.yaml:3"),
        Claim("payments/other", "brand-api", "beta", "c.yaml:1"),
    ]
    assert alias_conflicts(claims) == [
        (0, "brand-api:prod is also rolled out by payments/brand-api-2 (b.yaml:3)"),
        (1, "arn:aws:lambda:eu-west-1:123456789012:function:brand-api:prod is also rolled out by payments/brand-api"),
    ]


def test_parse_rollout_from_kubernetes() -> None:
    spec, errors = parse_rollout(OBJECT)
    assert errors == []
    assert spec is not None
    assert (spec.namespace, spec.name, spec.generation, spec.key) == ("payments", "brand-api", 7, "payments/brand-api")
    assert spec.strategy == CanaryStrategy(steps=(SetWeight(5), Pause(300.0)))
    assert spec.drift_policy == "Hold"


def test_parse_rollout_default_namespace_and_errors_without_line() -> None:
    obj = copy.deepcopy(OBJECT)
    del obj["metadata"]["namespace"]
    spec, _ = parse_rollout(obj, default_namespace="team-a")
    assert spec is not None and spec.namespace == "team-a"
    obj["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = 150
    spec, errors = parse_rollout(obj, file="team-a/brand-api")
    assert spec is None
    assert [str(error) for error in errors] == [
        "team-a/brand-api: spec.strategy.canary.steps[0].setWeight: 150 is greater than the maximum of 100"
    ]


def test_parse_rollout_of_another_kind() -> None:
    spec, errors = parse_rollout({"kind": "ConfigMap"})
    assert spec is None
    assert [str(error) for error in errors] == ["<resource>: kind: 'ConfigMap' is not LambdaRollout"]


def test_every_field_is_built() -> None:
    obj = copy.deepcopy(OBJECT)
    obj["spec"].update(
        {
            "version": None,
            "publish": {"codeSha256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=", "description": "v2"},
            "strategy": {"blueGreen": {"previewAlias": "green"}},
            "concurrency": {"reserved": 5},
            "asyncInvoke": {"onFailure": "arn:aws:sns:us-east-1:123456789012:dlq"},
            "hooks": {"afterAllowTraffic": {"function": "smoke:live"}},
            "paused": True,
            "revertOnDeletion": True,
            "driftPolicy": "Revert",
        }
    )
    del obj["spec"]["version"]
    spec, errors = parse_rollout(obj)
    assert errors == [] and spec is not None
    assert spec.version is None and spec.publish is not None and spec.publish.description == "v2"
    assert spec.concurrency is not None and spec.concurrency.warmup_timeout == 900.0
    assert spec.async_invoke is not None and spec.async_invoke.on_failure == "arn:aws:sns:us-east-1:123456789012:dlq"
    assert spec.hooks.after_allow_traffic is not None and spec.hooks.after_allow_traffic.timeout == 60.0
    assert spec.hooks.before_allow_traffic is None
    assert (spec.paused, spec.revert_on_deletion, spec.drift_policy) == (True, True, "Revert")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"alias": "123"}, "spec.alias: '123' is not an alias name: letters, digits, - and _, not only digits"),
        ({"functionName": "arn:aws:lambda:us-east-1:123456789012:function:f:prod"}, "spec.functionName: "),
        ({"strategy": {"linear": {"stepPercent": 100, "interval": "1m"}}}, "100 is greater than the maximum of 99"),
        ({"strategy": {"canary": {"steps": []}}}, "spec.strategy.canary.steps: [] should be non-empty"),
        ({"hooks": {"beforeAllowTraffic": {"url": "ftp://x"}}}, "'ftp://x' is not an http:// or https:// URL"),
    ],
)
def test_more_schema_errors(change: dict[str, Any], expected: str) -> None:
    obj = copy.deepcopy(OBJECT)
    obj["spec"].update(change)
    spec, errors = parse_rollout(obj)
    assert spec is None
    assert len(errors) == 1 and expected in str(errors[0])
