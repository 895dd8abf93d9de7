"""The Kubernetes tests' fixtures: one real control plane per pytest session (per xdist worker).

The control plane starts only in a worker that runs a test asking for it, and every test that needs
it lives under ``tests/kube/``, so ``--dist loadfile`` keeps them on few workers. Missing binaries are
a failure, never a skip: ``make test`` builds them, and a skipped check would let a CRD the apiserver
refuses ship.

Tests share the control plane and each gets its own namespace (``namespace``): a deleted namespace
is never finalized here (no controller-manager), so namespaces stay and their LambdaRollouts are
deleted after the test, which keeps a cluster-wide operator of a later test from seeing them. The
operator tests act as the controller's own ServiceAccount, bound by the RBAC ``manifests/`` ships
(``controller_kubeconfig``), against the strict AWS emulator (``aws``, one per worker, wiped per test).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import aws as aws
from tests.integration.conftest import emulator as emulator
from tests.kube.controlplane import CRD_NAME, ROOT, ControlPlane, missing_binaries, start_control_plane
from tests.kube.operators import (
    CONTROLLER_NAMESPACE,
    LEASE_NAME,
    RBAC_KINDS,
    SERVICE_ACCOUNT,
    apply_objects,
    delete_rollouts,
    manifest_objects,
)

__all__ = ["aws", "emulator"]  # the integration tests' emulator fixtures, shared


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
    control_plane.wait_established(CRD_NAME)
    return CRD_NAME


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own; its LambdaRollouts are deleted afterwards (finalizers first)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    name = f"t-{slug[:48].strip('-')}-{digest}"
    control_plane.ensure_namespace(name)
    yield name
    delete_rollouts(control_plane, name)


@pytest.fixture(scope="session")
def controller_rbac(control_plane: ControlPlane, rollout_crd: str) -> None:
    """The namespace, ServiceAccount, roles and bindings of ``kubectl kustomize manifests/``, applied."""
    objects = manifest_objects(control_plane)
    apply_objects(control_plane, [obj for obj in objects if obj["kind"] in {"Namespace", *RBAC_KINDS}])


@pytest.fixture
def controller_kubeconfig(control_plane: ControlPlane, controller_rbac: None) -> Iterator[Path]:
    """A kubeconfig acting as the controller's ServiceAccount; the leader Lease is removed afterwards."""
    yield control_plane.service_account_kubeconfig(CONTROLLER_NAMESPACE, SERVICE_ACCOUNT)
    control_plane.kubectl("delete", "lease", LEASE_NAME, "-n", CONTROLLER_NAMESPACE, "--ignore-not-found")
