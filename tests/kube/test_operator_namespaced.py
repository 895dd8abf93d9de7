"""``operator --namespace``: the kustomize component ``manifests/namespaced`` on the real apiserver.

An overlay of the base with the component and ``namespace: <the test's>`` is built with the pinned
kubectl; its ServiceAccount, Roles and RoleBindings are applied, and the operator runs with the
Deployment's own ``args`` and env, expanded as the kubelet does (``$(POD_NAMESPACE)``). It works in
its namespace (status, Events, finalizer, Lease) and is refused everything else: rollouts of other
namespaces, the CRDs, Leases elsewhere, and it never even asks (no refusal in its log).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import canary, rollout_document, seed_alias, write_calls
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.operators import (
    CLUSTER_ROLE,
    CONTROLLER_NAMESPACE,
    RBAC_KINDS,
    SERVICE_ACCOUNT,
    apply_objects,
    apply_rollout,
    events,
    eventually,
    grants,
    holder,
    manifest_objects,
    operator,
    phase_is,
    rollout,
    status_of,
    the,
)

FUNCTION = "orders"
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


def overlay(directory: Path, namespace: str) -> Path:
    """What a team writes: the base, the component, and their namespace."""
    directory.mkdir()
    base = os.path.relpath(ROOT / "manifests", directory)
    (directory / "kustomization.yaml").write_text(
        f"namespace: {namespace}\nresources: [{base}]\ncomponents: [{base}/namespaced]\n"
    )
    return directory


def expanded(args: list[str], env: dict[str, str]) -> list[str]:
    """Container args as the kubelet runs them: ``$(VAR)`` replaced from the container's env."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def document(namespace: str) -> dict[str, Any]:
    doc = rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(20, None))
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["revertOnDeletion"] = True
    return doc


def test_the_namespaced_component_renders_nothing_cluster_scoped_and_the_same_rules(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    objects = manifest_objects(control_plane, overlay(tmp_path / "team", namespace))
    assert {obj["kind"] for obj in objects} & CLUSTER_SCOPED == set()
    assert {obj["metadata"]["namespace"] for obj in objects} == {namespace}
    for binding in (obj for obj in objects if obj["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}]
    # The Role grants what the ClusterRole does, but for the CRDs (the operator does not follow them here).
    cluster = grants(the(manifest_objects(control_plane), "ClusterRole", CLUSTER_ROLE))
    role = grants(the(objects, "Role", "lambda-rollouts"))
    assert role == {(resource, verb) for resource, verb in cluster if resource != "customresourcedefinitions"}
    (container,) = the(objects, "Deployment", "lambda-rollouts")["spec"]["template"]["spec"]["containers"]
    assert "--namespace=$(POD_NAMESPACE)" in container["args"] and "--all-namespaces" not in container["args"]


def test_the_namespaced_operator_works_in_its_namespace_and_is_refused_the_rest(
    control_plane: ControlPlane, rollout_crd: str, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    seed_alias(aws, "elsewhere", versions=3)
    aws.clear_calls()
    objects = manifest_objects(control_plane, overlay(tmp_path / "team", namespace))
    apply_objects(control_plane, [obj for obj in objects if obj["kind"] in RBAC_KINDS])
    kubeconfig = control_plane.service_account_kubeconfig(namespace, SERVICE_ACCOUNT)

    # Refused whatever is not its namespace's (asked as the operator's own account).
    def can(*args: str) -> str:
        return control_plane.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False).stdout.strip()

    assert can("list", "lambdarollouts.lambda.rollouts.dev", "-n", namespace) == "yes"
    assert can("patch", "lambdarollouts.lambda.rollouts.dev", "--subresource=status", "-n", namespace) == "yes"
    assert can("list", "lambdarollouts.lambda.rollouts.dev", "--all-namespaces") == "no"
    assert can("list", "lambdarollouts.lambda.rollouts.dev", "-n", "default") == "no"
    assert can("list", "customresourcedefinitions.apiextensions.k8s.io") == "no"
    assert can("get", "leases.coordination.k8s.io", "-n", CONTROLLER_NAMESPACE) == "no"
    assert can("create", "events", "-n", "default") == "no"

    other = f"{namespace[:50]}-other"
    control_plane.ensure_namespace(other)
    stranger = rollout_document("elsewhere", function="elsewhere", version="2", strategy=canary(20, None))
    stranger["metadata"]["namespace"] = other
    apply_rollout(control_plane, stranger)

    (container,) = the(objects, "Deployment", "lambda-rollouts")["spec"]["template"]["spec"]["containers"]
    env = {"POD_NAME": "op-a", "POD_NAMESPACE": namespace}  # the downward API's values
    command = expanded(container["args"], env)
    try:
        with operator(kubeconfig=kubeconfig, aws=aws, directory=tmp_path, command=command, env=env) as op:
            apply_rollout(control_plane, document(namespace))
            eventually(phase_is(control_plane, namespace, FUNCTION, "Paused"), what="Paused")
            eventually(
                lambda: (rollout(control_plane, namespace, FUNCTION) or {})["metadata"].get("finalizers"),
                what="the finalizer",
            )
            assert [e["reason"] for e in events(control_plane, namespace)][-1] == "WaitingForPromote"
            assert holder(control_plane, namespace) == "op-a"  # the Lease is in its namespace
            assert op.ready()
            # The other namespace's rollout is not its business: never looked at, never written.
            assert status_of(control_plane, other, "elsewhere") == {}
            assert {c.params.get("FunctionName") for c in aws.calls() if c.operation == "GetAlias"} <= {FUNCTION}
            assert op.lines("403") == [] and op.lines("orbidden") == []  # it never asked for more
    finally:
        control_plane.kubectl("delete", "lro", "elsewhere", "-n", other, "--wait=false")
    assert "UpdateAlias" in write_calls(aws)
