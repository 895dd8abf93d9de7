"""The operator's ``.status``: what the core's ``Status`` becomes on the resource, checked against the CRD.

The status subresource is validated by the API server against the CRD's schema, and a field the
schema does not declare is pruned silently: so every field the writer sends must be in the schema,
with the type it has there.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jsonschema

from controller.core.types import Phase, SequentialEvidence, Status, Warmup
from controller.document.schema import openapi_schema, to_json_schema
from controller.kube.status import status_body


def warming_status(warmup: Warmup | None) -> Status:
    return Status(
        phase=Phase.PROGRESSING,
        stable_version="1",
        canary_version="2",
        canary_weight=0,
        current_step=0,
        steps=3,
        step_started_at=1_700_000_000.0,
        message="warming provisioned concurrency of version 2",
        reason="Warming",
        warmup=warmup,
    )


def status_schema() -> dict[str, Any]:
    schema = to_json_schema(openapi_schema()["properties"]["status"])
    return {**schema, "additionalProperties": False}


def present(body: dict[str, Any]) -> dict[str, Any]:
    """The status as stored after the merge patch: ``None`` removes a field."""
    return {key: value for key, value in body.items() if value is not None}


def test_warmup_progress_is_in_the_status_and_the_crd_declares_it() -> None:
    body = status_body(
        warming_status(Warmup(version="2", requested=10, allocated=4, status="IN_PROGRESS")), generation=3, now=0.0
    )
    assert body["warmup"] == {"version": "2", "allocated": 4, "requested": 10, "status": "IN_PROGRESS"}
    jsonschema.validate(present(body), status_schema())
    declared = openapi_schema()["properties"]["status"]["properties"]["warmup"]["properties"]
    assert set(body["warmup"]) <= set(declared)


def test_warmup_is_removed_from_the_status_once_nothing_warms() -> None:
    body = status_body(warming_status(None), generation=3, now=0.0)
    assert "warmup" in body and body["warmup"] is None  # a merge patch's null removes the old value
    jsonschema.validate(present(body), status_schema())


def test_the_sequential_evidence_is_in_the_status_and_the_crd_declares_it() -> None:
    evidence = SequentialEvidence(
        test="errors",
        canary_failures=12,
        canary_requests=1000,
        stable_failures=50,
        stable_requests=5000,
        regression=0.31234,
        no_regression=1.1,
        bound=2.0,
        conclusion="Continue",
        looks=7,
    )
    body = status_body(dataclasses.replace(warming_status(None), evidence=(evidence,)), generation=3, now=0.0)
    assert body["evidence"] == [
        {
            "test": "errors",
            "canary": {"failures": 12, "requests": 1000},
            "stable": {"failures": 50, "requests": 5000},
            "looks": 7,
            "regression": 0.312,
            "noRegression": 1.1,
            "bound": 2.0,
            "conclusion": "Continue",
        }
    ]
    jsonschema.validate(present(body), status_schema())  # unknown fields refused, as the apiserver prunes them
    # Once the attempt ends its tests are gone: an empty list replaces the old one in the merge patch.
    assert status_body(warming_status(None), generation=3, now=0.0)["evidence"] == []
