"""Presets: every spelling people copy from CodeDeploy, SAM or CDK maps to one canonical name."""

from __future__ import annotations

import pytest

from controller.document.loader import parse_rollout
from controller.document.model import PresetStrategy
from controller.document.presets import PRESETS, accepted_preset_names, canonical_preset_name
from controller.document.schema import openapi_schema

CANONICAL = [
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
]
SPELLINGS = [(prefix + name, name) for name in CANONICAL for prefix in ("", "Lambda", "CodeDeployDefault.Lambda")]


def test_the_nine_codedeploy_lambda_configurations() -> None:
    assert list(PRESETS) == CANONICAL


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS)
def test_every_spelling(spelling: str, canonical: str) -> None:
    assert canonical_preset_name(spelling) == canonical


@pytest.mark.parametrize(("spelling", "canonical"), SPELLINGS)
def test_document_holds_the_canonical_name(spelling: str, canonical: str) -> None:
    spec, errors = parse_rollout(
        {
            "apiVersion": "lambda.rollouts.dev/v1alpha1",
            "kind": "LambdaRollout",
            "metadata": {"name": "brand-api"},
            "spec": {"functionName": "brand-api", "alias": "prod", "version": "1", "strategy": {"preset": spelling}},
        }
    )
    assert errors == []
    assert spec is not None and spec.strategy == PresetStrategy(canonical)


@pytest.mark.parametrize(
    "name",
    ["Canary10Percent7Minutes", "canary10percent5minutes", "CodeDeployDefault.AllAtOnce", "Lambda", "", "EC2AllAtOnce"],
)
def test_unknown(name: str) -> None:
    with pytest.raises(ValueError, match="not a CodeDeploy Lambda preset"):
        canonical_preset_name(name)


def test_crd_enum_is_exactly_the_accepted_spellings() -> None:
    preset = openapi_schema()["properties"]["spec"]["properties"]["strategy"]["properties"]["preset"]
    assert sorted(preset["enum"]) == sorted(accepted_preset_names())
    assert len(accepted_preset_names()) == 27
