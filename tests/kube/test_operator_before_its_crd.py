"""The CRD rule of the ClusterRole: an operator started before its CRD serves it once it is applied.

kopf follows the CRDs (list, then watch) and starts watching the resources of one when it appears;
without either verb the operator never notices the CRD, and its rollouts are never served. The CRD
comes and goes in these cases, so they run on a control plane of their own, not under the other
tests: the CRD is deleted before each operator start and applied after it.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.emulator import Emulator
from tests.integration.helpers import seed_alias
from tests.kube.controlplane import CRD_NAME, ROOT, ControlPlane, start_control_plane
from tests.kube.operators import delete_rollouts, eventually, operator
from tests.kube.rbac_cases import CRD_CASES, FUNCTION, SETTLE, Case, World, bind


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
            assert not touch_crd_until(bare_plane, world.paused, within=2 * SETTLE)
            case.missing(world)
