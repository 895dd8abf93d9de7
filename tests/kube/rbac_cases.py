"""The least-privilege cases: one verb of the operator's shipped roles taken away, and what then fails.

Shared by ``test_operator_rbac.py`` (the cases on the session's control plane) and
``test_operator_before_its_crd.py`` (the CRD rule, on a control plane of its own). A ``Case`` names
the verb removed, the apiserver's own words for the request it then refuses (as the operator logs
them), and a check of the behaviour that depends on it, which must be missing while what does not
depend on it still works.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from controller.emulator import Emulator
from tests.integration.helpers import WRITE_OPERATIONS, canary, rollout_document, write_calls
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.operators import (
    CLUSTER_ROLE,
    LEASE_ROLE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    Removal,
    apply_objects,
    apply_rollout,
    events,
    eventually,
    lease,
    log_time,
    manifest_objects,
    rbac_variant,
    rollout,
    status_of,
)

FUNCTION = "orders"
FINALIZER = "lambda.rollouts.dev/revert-on-deletion"
# After the refusal is in the log, how long a working operator would need (many times over, at a
# 0.2 s tick) to show the behaviour that is missing.
SETTLE = 1.0


@dataclass(frozen=True)
class World:
    plane: ControlPlane
    namespace: str
    aws: Emulator
    op: OperatorProcess

    def status(self) -> dict[str, object]:
        return status_of(self.plane, self.namespace, FUNCTION)

    def finalizers(self) -> list[str]:
        return list(((rollout(self.plane, self.namespace, FUNCTION) or {})["metadata"]).get("finalizers") or [])

    def apply(self) -> None:
        apply_document(self.plane, self.namespace)

    def paused(self) -> bool:
        return self.status().get("phase") == "Paused"


def apply_document(plane: ControlPlane, namespace: str) -> None:
    """A canary that pauses at 20% until promoted, with ``revertOnDeletion`` (so it wants a finalizer)."""
    doc = rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(20, None))
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["revertOnDeletion"] = True
    apply_rollout(plane, doc)


def nothing_served(world: World) -> None:
    assert world.status() == {}
    assert write_calls(world.aws) == []


def no_status_and_nothing_written(world: World) -> None:
    time.sleep(SETTLE)
    nothing_served(world)


def never_listed(world: World) -> None:
    no_status_and_nothing_written(world)
    # Not ready either: kopf runs, but with nothing it can list it watches nothing.
    assert not world.op.ready()


def changes_never_seen(world: World) -> None:
    # The resources were listed (the refusal is the watch that follows): one created now is never seen.
    world.apply()
    no_status_and_nothing_written(world)


def no_finalizer(world: World) -> None:
    eventually(world.paused, what="the rollout to walk (it needs no patch)")
    time.sleep(SETTLE)
    assert world.finalizers() == []


def no_status_but_the_rollout_walks(world: World) -> None:
    eventually(lambda: [e for e in events(world.plane, world.namespace) if e["reason"] == "WaitingForPromote"])
    assert world.status() == {}
    assert write_calls(world.aws)  # the alias moved: only the status is missing


def no_events_but_the_status(world: World) -> None:
    eventually(world.paused, what="the status (it needs no Event)")
    time.sleep(SETTLE)
    assert events(world.plane, world.namespace) == []


def never_leads(world: World) -> None:
    no_status_and_nothing_written(world)
    assert world.op.metric("lambda_rollouts_leader") == 0
    assert lease(world.plane, world.namespace) is None


def leads_once_then_steps_down(world: World) -> None:
    (line,) = eventually(
        lambda: world.op.lines("stopped leading: could not renew the lease within the renew deadline"),
        what="the step-down",
    )
    stepped_down = log_time(line)
    time.sleep(SETTLE)
    late = [c.operation for c in world.aws.calls() if c.operation in WRITE_OPERATIONS and c.timestamp > stepped_down]
    assert late == []  # nothing written once leadership was given up
    assert world.op.metric("lambda_rollouts_leader") == 0
    spec = (lease(world.plane, world.namespace) or {})["spec"]
    assert spec["holderIdentity"] == "op-a" and spec["renewTime"] == spec["acquireTime"]  # never renewed


@dataclass(frozen=True)
class Case:
    removal: Removal
    refused: str  # the apiserver's own words for the refused request, as the operator logs them
    missing: Callable[[World], None]  # asserts what no longer happens (and what still does)
    apply_first: bool = True  # the rollout exists before the operator starts


CASES = [
    Case(Removal("ClusterRole", "lambdarollouts", "list"), 'cannot list resource "lambdarollouts"', never_listed),
    Case(
        Removal("ClusterRole", "lambdarollouts", "watch"),
        'cannot watch resource "lambdarollouts"',
        changes_never_seen,
        apply_first=False,
    ),
    Case(Removal("ClusterRole", "lambdarollouts", "patch"), 'cannot patch resource "lambdarollouts" ', no_finalizer),
    Case(
        Removal("ClusterRole", "lambdarollouts/status", "patch"),
        'cannot patch resource "lambdarollouts/status"',
        no_status_but_the_rollout_walks,
    ),
    Case(Removal("ClusterRole", "events", "create"), 'cannot create resource "events"', no_events_but_the_status),
    Case(Removal("Role", "leases", "create"), 'cannot create resource "leases"', never_leads),
    Case(Removal("Role", "leases", "get"), 'cannot get resource "leases"', never_leads),
    Case(Removal("Role", "leases", "update"), 'cannot update resource "leases"', leads_once_then_steps_down),
]
CRD_CASES = [
    Case(
        Removal("ClusterRole", "customresourcedefinitions", verb),
        f'cannot {verb} resource "customresourcedefinitions"',
        nothing_served,  # after the CRD was touched for a while (test_operator_before_its_crd.py)
    )
    for verb in ("list", "watch")
]


def shipped_roles() -> dict[str, dict[str, object]]:
    documents = list(yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()))
    return {
        kind: next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)
        for kind, name in (("ClusterRole", CLUSTER_ROLE), ("Role", LEASE_ROLE))
    }


def bind(plane: ControlPlane, namespace: str, removal: Removal | None) -> Path:
    """The shipped RBAC, less ``removal``, for ServiceAccount ``namespace/lambda-rollouts``; its kubeconfig."""
    plane.ensure_namespace(namespace)
    objects = manifest_objects(plane)
    apply_objects(plane, rbac_variant(objects, namespace=namespace, suffix=namespace, removal=removal))
    return plane.service_account_kubeconfig(namespace, SERVICE_ACCOUNT)
