"""Least privilege, proven: without any one verb of its RBAC the operator fails where it needs that verb.

Each case runs the operator as a ServiceAccount of the test's namespace bound to the shipped
ClusterRole and leader-election Role (``manifests/rbac.yaml``, through ``kubectl kustomize``) with
exactly one verb taken out, and shows two things: the apiserver's refusal of that very request in
the operator's log (``cannot patch resource "lambdarollouts/status" ...``), and the behaviour that
depends on it missing, while what does not depend on it still works. So no rule is dead weight; and
``test_every_verb_of_the_shipped_roles_has_a_case`` fails when a rule is added without a case here.
The Lease lives in the test's namespace, so every case elects on its own.

The CRD rule is about an operator started before its CRD is served, so its cases run on a control
plane of their own (``test_operator_before_its_crd.py``). The cases are in ``rbac_cases.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.emulator import Emulator
from tests.integration.helpers import seed_alias
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import events, eventually, grants, lease, operator
from tests.kube.rbac_cases import (
    CASES,
    CRD_CASES,
    FINALIZER,
    FUNCTION,
    Case,
    World,
    apply_document,
    bind,
    shipped_roles,
)


def test_every_verb_of_the_shipped_roles_has_a_case() -> None:
    shipped = {(kind, resource, verb) for kind, role in shipped_roles().items() for resource, verb in grants(role)}
    covered = {(c.removal.kind, c.removal.resource, c.removal.verb) for c in [*CASES, *CRD_CASES]}
    assert covered == shipped


@pytest.mark.parametrize("case", CASES, ids=[c.removal.id for c in CASES])
def test_without_one_verb_the_operator_fails_where_it_needs_it(
    control_plane: ControlPlane, rollout_crd: str, aws: Emulator, namespace: str, tmp_path: Path, case: Case
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    aws.clear_calls()
    kubeconfig = bind(control_plane, namespace, case.removal)
    if case.apply_first:
        apply_document(control_plane, namespace)
    with operator(kubeconfig=kubeconfig, aws=aws, directory=tmp_path, lease_namespace=namespace) as op:
        world = World(control_plane, namespace, aws, op)
        eventually(lambda: op.lines(case.refused), what=f"the refusal ({case.refused}) in the log")
        case.missing(world)
        assert op.popen.poll() is None  # refused, logged, and still running


def test_with_every_verb_the_same_scenarios_work(
    control_plane: ControlPlane, rollout_crd: str, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    """The control: the shipped RBAC as it is, in a namespace of its own, does all the cases' parts."""
    seed_alias(aws, FUNCTION, versions=3)
    kubeconfig = bind(control_plane, namespace, None)
    with operator(kubeconfig=kubeconfig, aws=aws, directory=tmp_path, lease_namespace=namespace) as op:
        world = World(control_plane, namespace, aws, op)
        eventually(op.ready, what="ready")
        world.apply()  # after the listing: seen through the watch
        eventually(world.paused, what="Paused")
        eventually(lambda: world.finalizers() == [FINALIZER], what="the finalizer")
        assert [e["reason"] for e in events(control_plane, namespace)][-1] == "WaitingForPromote"
        assert op.metric("lambda_rollouts_leader") == 1
        spec = (lease(control_plane, namespace) or {})["spec"]
        eventually(
            lambda: (lease(control_plane, namespace) or {})["spec"]["renewTime"] != spec["acquireTime"],
            what="a renewal",
        )
        assert op.lines("HTTP 403") == [] and op.lines("Forbidden") == []
