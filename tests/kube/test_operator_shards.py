"""Two operator shards on the real apiserver: each serves the resources its selector matches.

``operator --selector shard=a`` and ``--selector shard=b`` run side by side as the controller's
ServiceAccount, each leading a Lease of its own (named from its selector); each rollout is moved by
exactly one of them (the emulator's call log names the access key of every AWS write) and its status
written by that one only (the apiserver's managedFields name the writer), and a resource relabelled
into the other shard is taken over by it from the durable record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from controller.kube.selector import Selector
from tests.integration.helpers import WRITE_OPERATIONS, alias_routing, canary, rollout_document, seed_alias
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import (
    CONTROLLER_NAMESPACE,
    LEASE_ROLE,
    OperatorProcess,
    apply_objects,
    apply_rollout,
    eventually,
    lease,
    manifest_objects,
    operator,
    rollout,
    status_of,
    the,
)


def labelled(namespace: str, name: str, shard: str, version: str = "2") -> dict[str, Any]:
    document = rollout_document(name, function=name, alias="live", version=version, strategy=canary(50, 0.2))
    document["metadata"].update(namespace=namespace, labels={"shard": shard})
    return document


def lease_holder(plane: ControlPlane, name: str) -> str | None:
    found = plane.kubectl("get", "lease", name, "-n", CONTROLLER_NAMESPACE, "-o", "json", "--ignore-not-found")
    if not found.stdout.strip():
        return None
    return str(json.loads(found.stdout)["spec"].get("holderIdentity") or "") or None


def status_managers(plane: ControlPlane, namespace: str, name: str) -> set[str]:
    """Who wrote the status subresource, from the apiserver's managedFields."""
    found = rollout(plane, namespace, name, managed_fields=True) or {}
    fields = found.get("metadata", {}).get("managedFields", [])
    return {entry["manager"] for entry in fields if entry.get("subresource") == "status"}


def writes_by(aws: Emulator, process: OperatorProcess, function: str) -> int:
    return sum(
        1
        for call in aws.calls()
        if call.operation in WRITE_OPERATIONS
        and call.access_key == process.access_key
        and function in str(call.params.get("FunctionName", ""))
    )


def test_each_shard_serves_its_own_resources_under_its_own_lease(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, "orders", versions=3)
    seed_alias(aws, "billing", versions=3)
    lease_a = Selector.parse("shard=a").lease_name("lambda-rollouts-leader")
    lease_b = Selector.parse("shard=b").lease_name("lambda-rollouts-leader")
    # What docs/accounts.md tells kustomize users: the leader-election Role names each shard's Lease.
    role = the(manifest_objects(control_plane), "Role", LEASE_ROLE)
    for rule in role["rules"]:
        if rule.get("resourceNames"):
            rule["resourceNames"] = [lease_a, lease_b]
    apply_objects(control_plane, [role])
    shard = {"kubeconfig": controller_kubeconfig, "aws": aws, "directory": tmp_path}
    with (
        operator(identity="op-a", extra_args=["--selector=shard=a"], **shard) as op_a,  # type: ignore[arg-type]
        operator(identity="op-b", extra_args=["--selector=shard=b"], **shard) as op_b,  # type: ignore[arg-type]
    ):
        eventually(lambda: lease_holder(control_plane, lease_a) == "op-a", what="op-a to lead shard a")
        eventually(lambda: lease_holder(control_plane, lease_b) == "op-b", what="op-b to lead shard b")
        apply_rollout(control_plane, labelled(namespace, "orders", "a"))
        apply_rollout(control_plane, labelled(namespace, "billing", "b"))
        for name in ("orders", "billing"):
            eventually(
                lambda name=name: status_of(control_plane, namespace, name).get("phase") == "Healthy",  # type: ignore[misc]
                timeout=30,
                what=f"{name} Healthy",
            )
        assert status_managers(control_plane, namespace, "orders") == {"lambda-rollouts (op-a)"}
        assert status_managers(control_plane, namespace, "billing") == {"lambda-rollouts (op-b)"}
        assert writes_by(aws, op_a, "orders") > 0 and writes_by(aws, op_b, "orders") == 0
        assert writes_by(aws, op_b, "billing") > 0 and writes_by(aws, op_a, "billing") == 0
        assert lease(control_plane) is None  # no shard took the unsharded Lease

        # orders moves to shard b and on to version 3: op-b resumes it from its record.
        before = writes_by(aws, op_a, "orders")
        apply_rollout(control_plane, labelled(namespace, "orders", "b", version="3"))
        eventually(
            lambda: status_of(control_plane, namespace, "orders").get("stableVersion") == "3",
            timeout=30,
            what="orders on version 3 by shard b",
        )
        assert "lambda-rollouts (op-b)" in status_managers(control_plane, namespace, "orders")
        assert writes_by(aws, op_a, "orders") == before and writes_by(aws, op_b, "orders") > 0
    apply_objects(control_plane, [the(manifest_objects(control_plane), "Role", LEASE_ROLE)])
    assert alias_routing(aws, "orders", "live") == ("3", {})
    assert alias_routing(aws, "billing", "live") == ("2", {})
