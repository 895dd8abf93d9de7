"""The Kubernetes tests' fixtures: one real control plane per pytest session (per xdist worker).

The control plane starts only in a worker that runs a test asking for it, and every test that needs
it lives under ``tests/kube/``, so ``--dist loadfile`` keeps them on few workers. Missing binaries are
a failure, never a skip: ``make test`` builds them, and a skipped check would let a CRD the apiserver
refuses ship.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.controlplane import CRD_NAME, ROOT, ControlPlane, missing_binaries, start_control_plane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with start_control_plane(tmp_path_factory.mktemp("kube")) as plane:
        yield plane


@pytest.fixture(scope="session")
def rollout_crd(control_plane: ControlPlane) -> str:
    """The name of the LambdaRollout CRD, applied from ``crds/`` (validation on) and Established."""
    control_plane.kubectl("apply", "-f", str(ROOT / "crds"))
    control_plane.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME
