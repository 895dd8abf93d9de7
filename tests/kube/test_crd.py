"""The CRD, the kustomize base and the examples, applied to a real kube-apiserver with validation on.

A platform team's first command is ``kubectl apply -f crds/``: the apiserver compiles the structural
schema and every CEL rule then, and refuses the CRD outright if one does not compile or costs too
much. Everything else is applied with ``--dry-run=server``, so the apiserver runs admission, strict
field validation (unknown fields are errors) and the CRD's schema on it without storing it; the
namespaces they need are created for real, since a dry-run namespace does not exist for the next
object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.core.types import Phase, SequentialEvidence, Status
from controller.kube.status import status_body
from tests.kube.controlplane import CRD_NAME, ROOT, ControlPlane

MONITORING_CRDS = Path(__file__).parent / "data" / "monitoring-crds.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))  # examples/config/ holds an ownership config, not rollouts


def dry_run(control_plane: ControlPlane, text: str) -> list[str]:
    """``kubectl apply --dry-run=server --validate=strict`` of ``text``: its output lines; no warning allowed."""
    result = control_plane.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=text)
    # A warning is the apiserver saying something is off (a deprecated API, a pod that would violate
    # the namespace's Pod Security level): as much a defect as a refusal.
    assert result.stderr == "", result.stderr
    return result.stdout.splitlines()


def test_the_crd_is_accepted_and_established(control_plane: ControlPlane) -> None:
    applied = control_plane.kubectl("apply", "--validate=strict", "-f", str(ROOT / "crds"))
    assert applied.stderr == ""
    assert applied.stdout.split()[0] == f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}"
    control_plane.wait_established(CRD_NAME)
    crd = json.loads(control_plane.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    conditions = {condition["type"]: condition["status"] for condition in crd["status"]["conditions"]}
    assert conditions["NamesAccepted"] == "True"
    assert conditions["Established"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["lro"]
    # The short name and the category resolve through discovery, as users will type them.
    assert control_plane.kubectl("get", "lro", "-A").returncode == 0
    assert control_plane.kubectl("get", "rollouts", "-A").returncode == 0


def test_every_object_of_the_kustomize_base_is_accepted(control_plane: ControlPlane, rollout_crd: str) -> None:
    built = control_plane.kubectl("kustomize", str(ROOT / "manifests")).stdout
    objects: list[dict[str, Any]] = [obj for obj in yaml.safe_load_all(built) if obj]
    kinds = {obj["kind"] for obj in objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    # The Prometheus Operator's kinds are known once their CRDs (stand-ins) are installed.
    control_plane.kubectl("apply", "-f", str(MONITORING_CRDS))
    for name in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        control_plane.wait_established(name)
    (namespace,) = [obj["metadata"]["name"] for obj in objects if obj["kind"] == "Namespace"]
    control_plane.ensure_namespace(namespace)

    lines = dry_run(control_plane, built)

    assert len(lines) == len(objects), lines
    assert all(line.endswith("(server dry run)") for line in lines), lines
    for obj in objects:
        assert any(f"/{obj['metadata']['name']} " in line for line in lines), (obj["kind"], lines)


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_every_example_is_accepted(control_plane: ControlPlane, rollout_crd: str, example: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
    assert {doc["kind"] for doc in documents} == {"LambdaRollout"}
    for doc in documents:
        control_plane.ensure_namespace(doc["metadata"]["namespace"])

    lines = dry_run(control_plane, example.read_text())

    assert lines == [
        f"lambdarollout.lambda.rollouts.dev/{doc['metadata']['name']} created (server dry run)" for doc in documents
    ]


def test_the_status_the_operator_writes_is_kept_whole(control_plane: ControlPlane, rollout_crd: str) -> None:
    """A status field the schema does not declare is pruned without a word: the sequential evidence and
    everything else ``status_body`` writes must come back from the apiserver as it went in."""
    document = yaml.safe_load((ROOT / "examples" / "sequential-analysis.yaml").read_text())
    namespace, name = document["metadata"]["namespace"], document["metadata"]["name"]
    control_plane.ensure_namespace(namespace)
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(document))
    evidence = SequentialEvidence("errors", 12, 1000, 50, 5000, 0.3125, 1.1, 2.0, "Continue", 7)
    status = Status(
        phase=Phase.PROGRESSING,
        stable_version="6",
        canary_version="7",
        canary_weight=10,
        current_step=2,
        steps=5,
        step_started_at=1_700_000_000.0,
        message="version 7 at 10%: baking",
        reason="Baking",
        evidence=(evidence,),
    )
    body = {k: v for k, v in status_body(status, generation=1, now=1_700_000_000.0).items() if v is not None}
    try:
        control_plane.kubectl(
            "patch",
            "lro",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": body}),
        )
        stored = json.loads(control_plane.kubectl("get", "lro", name, "-n", namespace, "-o", "json").stdout)["status"]
    finally:
        control_plane.kubectl("delete", "lro", name, "-n", namespace)
    assert stored == body
