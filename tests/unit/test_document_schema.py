"""The CRD is a valid, structural Kubernetes schema, and the Python side agrees with it.

``kubernetes-validate`` checks the CRD object against the apiextensions API; it does not check the
structural-schema rules the API server applies to ``openAPIV3Schema``, so those are walked here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.document.durations import DURATION_PATTERN
from controller.document.model import RolloutSpec, SequentialTest
from controller.document.schema import PATTERN_HINTS, crd_path, load_crd, openapi_schema, to_json_schema

REPO = Path(__file__).resolve().parents[2]
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# Keys the API server refuses anywhere in a v1 CRD schema.
FORBIDDEN = {"$ref", "$schema", "definitions", "id", "patternProperties", "dependencies", "additionalItems"}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node that describes a value (not junctor branches), with a readable path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_crd_passes_kubernetes_validate() -> None:
    crd = yaml.safe_load((REPO / "crds" / "lambdarollout.yaml").read_text())
    kubernetes_validate.validate(crd, "1.31", strict=True)


def test_names_and_version() -> None:
    spec = load_crd()["spec"]
    assert spec["group"] == "lambda.rollouts.dev"
    assert spec["names"] == {
        "kind": "LambdaRollout",
        "listKind": "LambdaRolloutList",
        "plural": "lambdarollouts",
        "singular": "lambdarollout",
        "shortNames": ["lro"],
        "categories": ["rollouts"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_every_node_has_a_type() -> None:
    for path, node in walk(openapi_schema()):
        if node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        assert node.get("type"), f"{path or '<root>'} has no type"


def test_junctors_only_validate() -> None:
    for path, node in walk(openapi_schema()):
        for junctor in JUNCTORS:
            branches = node.get(junctor, [])
            for branch in [branches] if isinstance(branches, dict) else branches:
                assert not {"type", "description", "default", "additionalProperties", "nullable"} & set(branch), path
                # A field named inside a junctor must also be specified outside it.
                for field in branch.get("required", []) + list(branch.get("properties", {})):
                    assert field in node.get("properties", {}), f"{path}: {field} only inside {junctor}"


def test_no_forbidden_keys_and_no_mixed_properties() -> None:
    for path, node in walk(openapi_schema()):
        assert not FORBIDDEN & set(node), path
        assert not node.get("uniqueItems"), f"{path}: use x-kubernetes-list-type: set"
        assert not ("properties" in node and "additionalProperties" in node), path
        for key, value in node.items():
            if key == "default":
                jsonschema.Draft7Validator(to_json_schema(node)).validate(value)


def test_metadata_is_left_to_kubernetes() -> None:
    assert openapi_schema()["properties"]["metadata"] == {"type": "object"}


def test_cel_rules_have_messages() -> None:
    rules = [rule for _, node in walk(openapi_schema()) for rule in node.get("x-kubernetes-validations", [])]
    assert rules
    for rule in rules:
        assert {"rule", "message"} <= set(rule) <= {"rule", "message", "fieldPath"}


def test_printer_columns_point_into_the_schema() -> None:
    (version,) = load_crd()["spec"]["versions"]
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Function", "Stable", "Canary", "Weight", "Step", "Steps", "Reason", "Age"]
    assert "priority" not in columns["Steps"] and columns["Reason"]["priority"] == 1  # STEP and STEPS side by side
    paths = {path for path, _ in walk(openapi_schema())}
    for column in columns.values():
        if column["name"] != "Age":
            assert column["jsonPath"] in paths, column


def test_every_pattern_has_words_for_it_and_durations_share_one_grammar() -> None:
    for path, node in walk(openapi_schema()):
        if "pattern" not in node:
            continue
        field = path.rsplit(".", 1)[-1]
        assert field in PATTERN_HINTS, f"{path}: add a PATTERN_HINTS entry"
        if PATTERN_HINTS[field].startswith("a duration"):
            assert node["pattern"] == DURATION_PATTERN, path


def test_crd_defaults_match_the_model() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["driftPolicy"]["default"] == RolloutSpec.__dataclass_fields__["drift_policy"].default
    test = spec["analysis"]["properties"]["sequential"]["items"]["properties"]
    model = SequentialTest(name="")
    assert test["maxIncrease"]["default"] == model.max_increase
    assert test["confidence"]["default"] == model.confidence
    assert test["versionDimension"]["default"] == model.version_dimension
    assert test["failures"]["properties"]["namespace"]["default"] == model.failures.namespace
    assert test["total"]["properties"]["namespace"]["default"] == model.total.namespace
    # Defaults the schema does not write (durations, the metric names) are the model's, as documented.
    assert (model.failures.metric_name, model.total.metric_name) == ("Errors", "Invocations")
    assert (model.period, model.publication_delay) == (60.0, 90.0)


def test_the_packaged_crd_is_the_crds_file() -> None:
    assert crd_path().read_bytes() == (REPO / "crds" / "lambdarollout.yaml").read_bytes()


def test_kustomization_lists_the_crd() -> None:
    kustomization = yaml.safe_load((REPO / "crds" / "Kustomization").read_text())
    assert kustomization["resources"] == ["lambdarollout.yaml"]


@pytest.mark.parametrize(
    ("k8s", "expected"),
    [
        ({"type": "string", "nullable": True}, {"type": ["string", "null"]}),
        (
            {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            {"type": "array", "uniqueItems": True, "items": {"type": "string"}},
        ),
        (
            {"type": "object", "properties": {"a": {"type": "integer"}}},
            {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        ),
        (
            {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {"type": "integer"}}},
            {"type": "object", "properties": {"a": {"type": "integer"}}},
        ),
    ],
)
def test_translation_to_json_schema(k8s: dict[str, Any], expected: dict[str, Any]) -> None:
    assert to_json_schema(k8s) == expected
