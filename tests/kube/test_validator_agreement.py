"""The CRD on a real apiserver and ``lambda-rollouts validate`` judge every document alike.

One file, ``crds/lambdarollout.yaml``, is both the CRD and the Python validator's schema, but the
apiserver adds what Python cannot run (the CEL rules) and Python adds what the schema cannot say
(``controller/document/semantics.py``). So every document the project ships or tests with is applied as
a custom resource (``kubectl apply --dry-run=server --validate=strict``) and loaded by the validator
(``load_paths``, what ``validate`` prints): both accept it or both refuse it, and when both refuse,
every field the apiserver names is a field the validator names (see ``names_same_field`` for the
two ways they may point at it). Each document is judged alone, from its own file.

Documents of ``tests/data`` and ``examples`` are compared as they are; each has several mistakes,
so ``MUTATIONS`` adds one-mistake variants of the examples, one per rule, where a rule the other
side lacks would show. What only one side can know is classified below with the reason, and that
side's verdict is still asserted.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.document.loader import load_paths
from tests.kube.controlplane import ROOT, ControlPlane

DATA = ROOT / "tests" / "data"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DOCUMENT_SEPARATOR = re.compile(r"^---\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Case:
    """One document, as the text of a file of its own."""

    id: str
    text: str


def split_documents(path: Path) -> list[Case]:
    text = path.read_text()
    parts = [part for part in DOCUMENT_SEPARATOR.split(text) if part.strip()]
    name = path.relative_to(ROOT).as_posix()
    return [Case(f"{name}#{number}", part) for number, part in enumerate(parts, start=1)]


FILE_CASES = [case for path in [*sorted(DATA.rglob("*.yaml")), *EXAMPLES] for case in split_documents(path)]

# Documents under tests/data that are not LambdaRollout custom resources at all; checked on their own below.
NOT_CUSTOM_RESOURCES = {
    "tests/data/invalid/yaml-syntax.yaml#1": "not YAML: both refuse it, kubectl while parsing, before any request",
    "tests/data/invalid/mixed-kinds.yaml#1": (
        "a ConfigMap: not ours; in a directory the loader skips it, named alone it is a file without a rollout"
    ),
}
# Rules across files (one name per namespace, one rollout per function alias): only the loader, which
# sees every file, can check them; the apiserver judges one object at a time. Each document alone passes.
CROSS_FILE = ("tests/data/invalid/duplicate-a.yaml", "tests/data/invalid/duplicate-b.yaml")


# ---- one mistake each ----------------------------------------------------------------------------------


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())
    return document


@dataclass(frozen=True)
class Mutation:
    """An example with one change. ``only`` names the side that refuses it alone, ``why`` says why."""

    id: str
    base: str
    change: Callable[[dict[str, Any]], None]
    only: str = ""  # "", "python" or "kubernetes"
    why: str = ""

    def text(self) -> str:
        document = copy.deepcopy(example(self.base))
        self.change(document)
        return yaml.safe_dump(document, sort_keys=False)


def _metric(document: dict[str, Any], index: int) -> dict[str, Any]:
    metric: dict[str, Any] = document["spec"]["analysis"]["metrics"][index]
    return metric


def _test(document: dict[str, Any], index: int) -> dict[str, Any]:
    test: dict[str, Any] = document["spec"]["analysis"]["sequential"][index]
    return test


def _set_steps(*steps: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["spec"]["strategy"]["canary"]["steps"] = list(steps)

    return change


MUTATIONS = [
    Mutation("name-not-dns", "canary.yaml", lambda d: d["metadata"].update(name="Brand_API")),
    Mutation("alias-latest", "canary.yaml", lambda d: d["spec"].update(alias="$LATEST")),
    Mutation("pause-first", "canary.yaml", _set_steps({"pause": {"duration": "1m"}}, {"setWeight": 10})),
    Mutation("weights-go-down", "canary.yaml", _set_steps({"setWeight": 50}, {"setWeight": 20})),
    Mutation("weight-100", "canary.yaml", _set_steps({"setWeight": 10}, {"setWeight": 100})),
    Mutation(
        "preview-is-alias", "blue-green.yaml", lambda d: d["spec"]["strategy"]["blueGreen"].update(previewAlias="prod")
    ),
    Mutation(
        "previous-is-alias",
        "blue-green.yaml",
        lambda d: d["spec"]["strategy"]["blueGreen"].update(previousAlias="prod"),
    ),
    Mutation(
        "previous-is-preview",
        "blue-green.yaml",
        lambda d: d["spec"]["strategy"]["blueGreen"].update(previousAlias="green"),
    ),
    Mutation(
        "promote-after-without-auto",
        "blue-green.yaml",
        lambda d: d["spec"]["strategy"]["blueGreen"].update(autoPromote=False),
    ),
    Mutation(
        "provisioned-over-half",
        "canary.yaml",
        lambda d: d["spec"].update(concurrency={"reserved": 10, "provisioned": 6}),
    ),
    Mutation(
        "provisioned-half", "canary.yaml", lambda d: d["spec"].update(concurrency={"reserved": 10, "provisioned": 5})
    ),
    Mutation("zero-deadline", "canary.yaml", lambda d: d["spec"].update(progressDeadline="0s")),
    Mutation("zero-linear-interval", "linear.yaml", lambda d: d["spec"]["strategy"]["linear"].update(interval="0m")),
    Mutation(
        "zero-warmup",
        "canary.yaml",
        lambda d: d["spec"].update(concurrency={"provisioned": 1, "warmupTimeout": "0.0s"}),
    ),
    Mutation(
        "zero-hook-timeout",
        "canary.yaml",
        lambda d: d["spec"].update(hooks={"beforeAllowTraffic": {"function": "check", "timeout": "0ms"}}),
    ),
    Mutation(
        "short-hook-timeout",
        "canary.yaml",
        lambda d: d["spec"].update(hooks={"beforeAllowTraffic": {"function": "check", "timeout": "0.5s"}}),
    ),
    Mutation("zero-metric-interval", "metrics-analysis.yaml", lambda d: _metric(d, 1).update(interval="0s")),
    Mutation("metric-cannot-fail", "metrics-analysis.yaml", lambda d: _metric(d, 1).pop("compareToStable")),
    Mutation("compare-outside-canary", "metrics-analysis.yaml", lambda d: _metric(d, 1).update(scope="alias")),
    Mutation("expression-with-metric", "metrics-analysis.yaml", lambda d: _metric(d, 1).update(expression="m1*2")),
    Mutation("queries-without-expression", "metrics-analysis.yaml", lambda d: _metric(d, 0).pop("expression")),
    Mutation("query-id-twice", "metrics-analysis.yaml", lambda d: _metric(d, 0)["queries"][1].update(id="errors")),
    Mutation("metric-name-twice", "metrics-analysis.yaml", lambda d: _metric(d, 1).update(name="error-rate")),
    Mutation(
        "metrics-with-blue-green",
        "blue-green.yaml",
        lambda d: d["spec"]["analysis"].update(metrics=example("metrics-analysis.yaml")["spec"]["analysis"]["metrics"]),
    ),
    Mutation("sequential-name-twice", "sequential-analysis.yaml", lambda d: _test(d, 1).update(name="errors")),
    Mutation("sequential-odd-period", "sequential-analysis.yaml", lambda d: _test(d, 0).update(period="90s")),
    Mutation("sequential-fraction-period", "sequential-analysis.yaml", lambda d: _test(d, 0).update(period="1.5m")),
    Mutation("sequential-period-120s", "sequential-analysis.yaml", lambda d: _test(d, 0).update(period="120s")),
    Mutation("sequential-period-half-minute", "sequential-analysis.yaml", lambda d: _test(d, 1).update(period="0.5m")),
    Mutation("sequential-period-2h", "sequential-analysis.yaml", lambda d: _test(d, 0).update(period="2h")),
    Mutation("sequential-period-7s", "sequential-analysis.yaml", lambda d: _test(d, 1).update(period="7s")),
    Mutation(
        "dimension-is-version-dimension",
        "sequential-analysis.yaml",
        lambda d: _test(d, 1)["dimensions"].update(FunctionVersion="7"),
    ),
    Mutation(
        "dimension-is-default-version-dimension",
        "sequential-analysis.yaml",
        lambda d: _test(d, 0).update(dimensions={"ExecutedVersion": "7"}),
    ),
    Mutation("confidence-one", "sequential-analysis.yaml", lambda d: _test(d, 0).update(confidence=1)),
    Mutation("max-increase-negative", "sequential-analysis.yaml", lambda d: _test(d, 0).update(maxIncrease=-0.1)),
    Mutation("negligible-rate-zero", "sequential-analysis.yaml", lambda d: _test(d, 1).update(negligibleRate=0)),
    Mutation("confidence-zero", "sequential-analysis.yaml", lambda d: _test(d, 0).update(confidence=0)),
    Mutation("confidence-half", "sequential-analysis.yaml", lambda d: _test(d, 0).update(confidence=0.5)),
    Mutation("failures-without-name", "sequential-analysis.yaml", lambda d: _test(d, 1)["failures"].pop("metricName")),
    Mutation("zero-publication-delay", "sequential-analysis.yaml", lambda d: _test(d, 1).update(publicationDelay="0s")),
    Mutation(
        "six-sequential-tests",
        "sequential-analysis.yaml",
        lambda d: d["spec"]["analysis"].update(sequential=[{"name": f"t{i}"} for i in range(6)]),
    ),
    Mutation(
        "promote-early-without-sequential",
        "sequential-analysis.yaml",
        lambda d: d["spec"]["analysis"].pop("sequential"),
    ),
    Mutation(
        "sequential-with-blue-green",
        "blue-green.yaml",
        lambda d: d["spec"].setdefault("analysis", {}).update(sequential=[{"name": "errors"}]),
    ),
    Mutation(
        "unknown-query-id",
        "metrics-analysis.yaml",
        lambda d: _metric(d, 0).update(expression="errors/calls*100"),
        only="python",
        why="metric math is parsed only by the controller; CEL has no tokenizer for CloudWatch expressions",
    ),
    Mutation(
        "odd-period",
        "metrics-analysis.yaml",
        lambda d: _metric(d, 1).update(period="90s"),
        only="python",
        why="CloudWatch periods (1, 5, 10, 30 s or a multiple of 60 s) need duration arithmetic the CRD does not do",
    ),
    Mutation(
        "bad-label",
        "canary.yaml",
        lambda d: d["metadata"].update(labels={"team/owner/x": "payments"}),
        only="kubernetes",
        why="object metadata (labels, annotations, ...) is the apiserver's; the loader reads only name and namespace",
    ),
    Mutation("external-id-without-role", "other-account.yaml", lambda d: d["spec"]["aws"].pop("roleArn")),
    Mutation(
        "region-not-the-functions",
        "other-account.yaml",
        lambda d: d["spec"].update(functionName="arn:aws:lambda:us-east-1:111111111111:function:ledger-api"),
    ),
    Mutation(
        "role-of-another-account",
        "other-account.yaml",
        lambda d: d["spec"].update(functionName="arn:aws:lambda:eu-west-1:333333333333:function:ledger-api"),
    ),
    Mutation("aws-empty", "other-account.yaml", lambda d: d["spec"].update(aws={})),
    Mutation("status-is-ignored", "canary.yaml", lambda d: d.update(status={"phase": "Bogus", "canaryWeight": 500})),
]


# ---- the two judges ------------------------------------------------------------------------------------

# Where kubectl's and the apiserver's messages name a field: a field error ("spec.alias: Required
# value"), a oneOf of the schema, a strict-decoding error, and the two refusals kubectl makes itself.
_FIELD_ERROR = re.compile(
    r"((?:apiVersion|metadata|spec)[\w.\[\]]*): (?:Invalid value|Required value|Unsupported value|Duplicate value"
    r"|Forbidden|Too long|Too many)"
)
_ONE_OF = re.compile(r'"((?:metadata|spec)[\w.\[\]]*)" must validate one and only one schema')
_DECODING = re.compile(r'(?:unknown|duplicate) field "([\w.\[\]]+)"')
_CLIENT_SIDE = {"no matches for kind": "apiVersion", "resource name may not be empty": "metadata.name"}


@dataclass(frozen=True)
class Verdicts:
    python: list[str]  # the field paths of the validator's errors; empty when it accepts
    kubernetes: str  # kubectl's stderr; empty when the apiserver accepts
    accepted_by_kubernetes: bool

    def kubernetes_fields(self) -> set[str]:
        fields = {*_FIELD_ERROR.findall(self.kubernetes), *_ONE_OF.findall(self.kubernetes)}
        fields |= set(_DECODING.findall(self.kubernetes))
        return fields | {field for words, field in _CLIENT_SIDE.items() if words in self.kubernetes}


def namespace_of(text: str) -> str:
    """The namespace the document names (it must exist for a dry run), else default."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return "default"
    metadata = document.get("metadata") if isinstance(document, dict) else None
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) else "default"


def judge(control_plane: ControlPlane, directory: Path, case: Case) -> Verdicts:
    file = directory / (re.sub(r"[^\w.-]", "_", case.id) + ".yaml")
    file.write_text(case.text)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(directory)
        python = [error.path for error in load_paths([file.name]).errors]
    control_plane.ensure_namespace(namespace_of(case.text))
    applied = control_plane.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(file), check=False)
    return Verdicts(python=python, kubernetes=applied.stderr.strip(), accepted_by_kubernetes=applied.returncode == 0)


def names_same_field(kubernetes: str, python: str) -> bool:
    """The same field; or the apiserver names the list holding it (a CEL rule cannot name an index);
    or the validator names the object or list where the apiserver names one field or item of it (an
    "exactly one of" rule on the object, whose first choice the apiserver also reports as required)."""
    return (
        kubernetes == python
        or python.startswith(f"{kubernetes}[")
        or re.fullmatch(re.escape(python) + r"(\.\w+|\[\d+\])", kubernetes) is not None
    )


def assert_agree(verdicts: Verdicts) -> None:
    assert verdicts.accepted_by_kubernetes == (not verdicts.python), verdicts
    if verdicts.python:
        fields = verdicts.kubernetes_fields()
        assert fields, f"the apiserver's refusal names no field: {verdicts.kubernetes}"
        for field in fields:
            assert any(names_same_field(field, path) for path in verdicts.python), (field, verdicts)


# ---- the tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case", [case for case in FILE_CASES if case.id not in NOT_CUSTOM_RESOURCES], ids=lambda c: c.id
)
def test_every_shipped_and_test_document_is_judged_alike(
    control_plane: ControlPlane, rollout_crd: str, tmp_path: Path, case: Case
) -> None:
    assert_agree(judge(control_plane, tmp_path, case))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.id)
def test_one_mistake_is_judged_alike(
    control_plane: ControlPlane, rollout_crd: str, tmp_path: Path, mutation: Mutation
) -> None:
    verdicts = judge(control_plane, tmp_path, Case(mutation.id, mutation.text()))
    if mutation.only == "python":
        assert verdicts.python and verdicts.accepted_by_kubernetes, (mutation.why, verdicts)
    elif mutation.only == "kubernetes":
        assert not verdicts.python and not verdicts.accepted_by_kubernetes, (mutation.why, verdicts)
    else:
        assert_agree(verdicts)


def test_a_key_given_twice_is_the_validators_alone(
    control_plane: ControlPlane, rollout_crd: str, tmp_path: Path
) -> None:
    # kubectl turns YAML into JSON before sending it, keeping the last of two values: the apiserver
    # never sees the first, so only the validator can refuse the ambiguity.
    text = (
        (ROOT / "examples" / "canary.yaml").read_text().replace("  alias: prod\n", "  alias: prod\n  alias: live\n", 1)
    )
    verdicts = judge(control_plane, tmp_path, Case("key-twice", text))
    assert verdicts.python == ["spec.alias"]
    assert verdicts.accepted_by_kubernetes, verdicts


def test_what_is_not_a_custom_resource(control_plane: ControlPlane, tmp_path: Path) -> None:
    cases = {case.id: case for case in FILE_CASES}
    assert set(NOT_CUSTOM_RESOURCES) <= set(cases)
    syntax = judge(control_plane, tmp_path, cases["tests/data/invalid/yaml-syntax.yaml#1"])
    assert syntax.python == ["yaml"]
    assert not syntax.accepted_by_kubernetes and "error converting YAML to JSON" in syntax.kubernetes
    config_map = judge(control_plane, tmp_path, cases["tests/data/invalid/mixed-kinds.yaml#1"])
    # Named on its own, a file without a rollout is a mistake to the validator (a wrong path?), while
    # the apiserver takes the ConfigMap; in a directory of rollouts the loader skips it silently.
    assert config_map.python == [""] and config_map.accepted_by_kubernetes
    directory = tmp_path / "directory"
    directory.mkdir()
    (directory / "config.yaml").write_text(cases["tests/data/invalid/mixed-kinds.yaml#1"].text)
    assert load_paths([directory]).errors == []


def test_rules_across_files_are_the_loaders_alone(
    control_plane: ControlPlane, rollout_crd: str, tmp_path: Path
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        together = load_paths(list(CROSS_FILE))
    assert together.rollouts == []
    assert {error.path for error in together.errors} == {"metadata.name", "spec.alias"}
    assert all(" also " in error.message for error in together.errors)
    for path in CROSS_FILE:
        for case in split_documents(ROOT / path):
            verdicts = judge(control_plane, tmp_path, case)
            assert verdicts.python == [] and verdicts.accepted_by_kubernetes, verdicts
