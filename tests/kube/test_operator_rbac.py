"""Least privilege, proven: without any one verb of its RBAC the operator fails where it needs that verb.

Each case runs the operator as a ServiceAccount of the test's namespace bound to the shipped
ClusterRole and leader-election Role (``manifests/rbac.yaml``, through ``kubectl kustomize``) with
exactly one verb taken out, and shows two things: the apiserver's refusal of that very request in
the operator's log (``cannot patch resource "lambdarollouts/status" ...``), and the behaviour that
depends on it missing, while what does not depend on it still works. So no rule is dead weight; and
``test_every_verb_of_the_shipped_roles_has_a_case`` fails when a rule is added without a case here.
The Lease lives in the test's namespace, so every case elects on its own.

The CRD rule is about an operator started before its CRD is served (kopf follows the CRDs and
starts watching the resource when it appears), so its cases run on a control plane of their own,
where the CRD is deleted before and applied after each operator start.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from controller.emulator import Emulator
from tests.integration.helpers import WRITE_OPERATIONS, canary, rollout_document, seed_alias, write_calls
from tests.kube.controlplane import CRD_NAME, ROOT, ControlPlane, start_control_plane
from tests.kube.operators import (
    CLUSTER_ROLE,
    LEASE_ROLE,
    SERVICE_ACCOUNT,
    OperatorProcess,
    Removal,
    apply_objects,
    apply_rollout,
    delete_rollouts,
    events,
    eventually,
    grants,
    lease,
    log_time,
    manifest_objects,
    operator,
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


def no_status_and_nothing_written(world: World) -> None:
    time.sleep(SETTLE)
    assert world.status() == {}
    assert write_calls(world.aws) == []


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
        no_status_and_nothing_written,
    )
    for verb in ("list", "watch")
]


def shipped_roles() -> dict[str, dict[str, object]]:
    documents = list(yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()))
    return {
        kind: next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)
        for kind, name in (("ClusterRole", CLUSTER_ROLE), ("Role", LEASE_ROLE))
    }


def test_every_verb_of_the_shipped_roles_has_a_case() -> None:
    shipped = {(kind, resource, verb) for kind, role in shipped_roles().items() for resource, verb in grants(role)}
    covered = {(c.removal.kind, c.removal.resource, c.removal.verb) for c in [*CASES, *CRD_CASES]}
    assert covered == shipped


def bind(plane: ControlPlane, namespace: str, removal: Removal | None) -> Path:
    """The shipped RBAC, less ``removal``, for ServiceAccount ``namespace/lambda-rollouts``; its kubeconfig."""
    plane.ensure_namespace(namespace)
    objects = manifest_objects(plane)
    apply_objects(plane, rbac_variant(objects, namespace=namespace, suffix=namespace, removal=removal))
    return plane.service_account_kubeconfig(namespace, SERVICE_ACCOUNT)


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


# ---- the CRD rule: an operator started before its CRD ---------------------------------------------


@pytest.fixture(scope="module")
def bare_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: the CRD comes and goes here, not under the other tests."""
    with start_control_plane(tmp_path_factory.mktemp("bare-kube")) as plane:
        yield plane


def touch_crd_until(plane: ControlPlane, check: Callable[[], bool], *, within: float) -> bool:
    """Annotate the CRD anew every half second until ``check()`` holds; whether it did within ``within``.

    kopf lists the served resources, then lists and watches the CRDs: a CRD created between the two
    is in neither (kopf takes its initial CRD listing as already seen). Any later change of a CRD
    makes kopf look at its group again, so touching it closes that start-up gap in the test, and
    only reaches kopf through the CRD watch the cases take away.
    """
    deadline = time.monotonic() + within
    for count in itertools.count():
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        plane.kubectl("annotate", "crd", CRD_NAME, f"lambda.rollouts.dev/touched={count}", "--overwrite")
        time.sleep(0.5)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("case", [None, *CRD_CASES], ids=["all-verbs", *(c.removal.id for c in CRD_CASES)])
def test_an_operator_started_before_its_crd_serves_it_once_applied_only_with_the_crd_rule(
    bare_plane: ControlPlane, aws: Emulator, tmp_path: Path, case: Case | None, request: pytest.FixtureRequest
) -> None:
    seed_alias(aws, FUNCTION, versions=3)
    aws.clear_calls()
    namespace = f"crd-{request.node.callspec.id}"
    bare_plane.kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--wait=true")
    kubeconfig = bind(bare_plane, namespace, case.removal if case else None)
    with (
        contextlib.ExitStack() as cleanup,
        operator(kubeconfig=kubeconfig, aws=aws, directory=tmp_path, lease_namespace=namespace) as op,
    ):
        # Our finalizer would hold the CRD's deletion in the next case (no operator runs then).
        cleanup.callback(delete_rollouts, bare_plane, namespace)
        world = World(bare_plane, namespace, aws, op)
        if case is None:
            eventually(lambda: op.metric("lambda_rollouts_leader") == 1, what="leading")
        else:
            eventually(lambda: op.lines(case.refused), what=f"the refusal ({case.refused}) in the log")
        assert not op.ready()  # no CRD, nothing to list: not ready
        bare_plane.kubectl("apply", "-f", str(ROOT / "crds"))
        bare_plane.wait_established(CRD_NAME)
        world.apply()
        if case is None:
            assert touch_crd_until(bare_plane, world.paused, within=15), "the CRD was never noticed"
            eventually(op.ready, what="ready")
        else:
            assert not touch_crd_until(bare_plane, world.paused, within=SETTLE)
            case.missing(world)
