"""The test control plane itself: the pinned versions, real authentication and RBAC, TokenRequest tokens.

The Kubernetes tests are only as good as the apiserver under them, so this checks that it is the
release ``tests/kube/gobuild/go.mod`` pins, that it refuses an unknown token and an unbound
ServiceAccount, and that a binding grants exactly what it says. And that missing binaries fail the
tests with the command to run, rather than skipping them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.kube.controlplane import ROOT, ControlPlane, binary

GO_MOD = (ROOT / "tests" / "kube" / "gobuild" / "go.mod").read_text()


def pinned(module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", GO_MOD, re.MULTILINE)
    assert match, f"{module} is not in go.mod"
    return match.group(1)


def test_every_binary_reports_the_pinned_version(control_plane: ControlPlane) -> None:
    kubernetes = pinned("k8s.io/kubernetes")
    served = json.loads(control_plane.kubectl("get", "--raw", "/version").stdout)
    assert served["gitVersion"] == kubernetes
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == kubernetes
    etcd = subprocess.run([binary("etcd"), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"etcd Version: {pinned('go.etcd.io/etcd/server/v3').removeprefix('v')}" in etcd
    helm = subprocess.run([binary("helm"), "version", "--template={{.Version}}"], capture_output=True, text=True)
    assert helm.stdout == pinned("helm.sh/helm/v3")


def test_an_unknown_token_is_unauthorized(control_plane: ControlPlane) -> None:
    stranger = control_plane.kubeconfig_for_token("not-a-token", name="stranger")
    refused = control_plane.kubectl("get", "namespaces", kubeconfig=stranger, check=False)
    assert refused.returncode != 0
    assert "Unauthorized" in refused.stderr or "must be logged in" in refused.stderr, refused.stderr


def test_a_service_account_has_only_what_it_is_bound_to(control_plane: ControlPlane, rollout_crd: str) -> None:
    account = control_plane.service_account_kubeconfig("rbac-check", "reader")
    whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=account).stdout)
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:rbac-check:reader"
    before = control_plane.kubectl("get", "lro", "-n", "rbac-check", kubeconfig=account, check=False)
    assert before.returncode != 0 and "forbidden" in before.stderr, before.stderr

    control_plane.kubectl(
        "create",
        "role",
        "lro-reader",
        "-n",
        "rbac-check",
        "--verb=list",
        "--resource=lambdarollouts.lambda.rollouts.dev",
    )
    control_plane.kubectl(
        "create",
        "rolebinding",
        "lro-reader",
        "-n",
        "rbac-check",
        "--role=lro-reader",
        "--serviceaccount=rbac-check:reader",
    )

    assert control_plane.kubectl("get", "lro", "-n", "rbac-check", kubeconfig=account).returncode == 0
    elsewhere = control_plane.kubectl("get", "lro", "-n", "default", kubeconfig=account, check=False)
    assert elsewhere.returncode != 0 and "forbidden" in elsewhere.stderr, elsewhere.stderr


def test_missing_binaries_fail_the_tests_with_the_command_to_run(tmp_path: Path) -> None:
    # A fresh pytest whose binaries directory is empty: the fixture must fail, never skip.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-n0",
            "tests/kube/test_crd.py",
            "-k",
            "established",
        ],
        cwd=ROOT,
        env={**os.environ, "KUBE_BIN_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout
    assert f"{tmp_path}/etcd is missing: run `make kube-binaries`" in run.stdout
    assert "1 error" in run.stdout.splitlines()[-1] and "skipped" not in run.stdout.splitlines()[-1]
