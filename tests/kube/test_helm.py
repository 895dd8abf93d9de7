"""The Helm chart against a real kube-apiserver: its renderings validated, installed, upgraded, uninstalled.

``helm template`` output goes through ``kubectl apply --dry-run=server --validate=strict`` as the
kustomize base does in ``test_crd.py`` (admission, strict field validation, the Prometheus Operator
stand-in CRDs), in namespaces that warn at the restricted Pod Security level, so a pod template the
restricted level refuses fails here. Then helm itself installs, upgrades and uninstalls releases with
the admin kubeconfig. No pod ever runs (there is no kubelet, scheduler or controller-manager), so
these tests look at objects and at what RBAC grants (``kubectl auth can-i`` as the ServiceAccount),
never at pods; ``helm install`` runs without ``--wait`` for the same reason.

Releases use their own names and namespaces (never the kustomize base's ``lambda-rollouts``), so
they cannot collide with objects other tests apply to the same control plane.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.kube.chart import CHART, CI_VALUES, helm, parse, template, the
from tests.kube.controlplane import ROOT, ControlPlane
from tests.kube.test_crd import MONITORING_CRDS, dry_run

# A namespace the restricted Pod Security level is checked in: `warn` makes the apiserver answer a
# violating pod template with a warning, which dry_run refuses (enforce alone checks only Pods).
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


@pytest.fixture(scope="module")
def cluster(control_plane: ControlPlane, rollout_crd: str) -> ControlPlane:
    """The control plane with the CRD and the Prometheus Operator's stand-in CRDs established."""
    control_plane.kubectl("apply", "-f", str(MONITORING_CRDS))
    for name in ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"):
        control_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return control_plane


def restricted_namespace(plane: ControlPlane, name: str) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
    plane.kubectl("apply", "-f", "-", input=json.dumps(namespace))


def get(plane: ControlPlane, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    scope = [f"--namespace={namespace}"] if namespace else []
    result: dict[str, Any] = json.loads(plane.kubectl("get", kind, name, *scope, "-o", "json").stdout)
    return result


def absent(plane: ControlPlane, kind: str, name: str, namespace: str | None = None) -> bool:
    scope = [f"--namespace={namespace}"] if namespace else []
    result = plane.kubectl("get", kind, name, *scope, "--ignore-not-found", "-o", "name", check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == ""


def can(plane: ControlPlane, account: str, verb: str, resource: str, *scope: str) -> bool:
    """``kubectl auth can-i`` as the ServiceAccount ``namespace:name``."""
    result = plane.kubectl(
        "auth", "can-i", verb, resource, f"--as=system:serviceaccount:{account}", *scope, check=False
    )
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def release_secrets(plane: ControlPlane, release: str, namespace: str) -> list[str]:
    """Helm's record of a release: one Secret per revision, labelled owner=helm, name=RELEASE."""
    out = plane.kubectl(
        "get", "secrets", f"--namespace={namespace}", f"--selector=owner=helm,name={release}", "-o", "name"
    ).stdout
    return out.split()


# ---- renderings, validated by the apiserver --------------------------------------------------------


@pytest.mark.parametrize("values", [None, CI_VALUES], ids=["default", "namespaced"])
def test_every_rendered_object_is_accepted(cluster: ControlPlane, values: Path | None) -> None:
    namespace = "helm-render"
    restricted_namespace(cluster, namespace)
    for watched in ("payments", "search"):  # ci/namespaced-values.yaml's watchNamespaces
        cluster.ensure_namespace(watched)
    text = template(release="render", namespace=namespace, values=[values] if values else [])
    objects = parse(text)

    lines = dry_run(cluster, text)

    assert len(lines) == len(objects), lines
    assert all(line.endswith("(server dry run)") for line in lines), lines
    for obj in objects:
        assert any(f"/{obj['metadata']['name']} " in line for line in lines), (obj["kind"], lines)


def test_the_roles_leave_out_exactly_what_the_apiserver_scopes_to_the_cluster(cluster: ControlPlane) -> None:
    """The chart's list of cluster-scoped resources (templates/rbac.yaml) is the apiserver's."""
    names = cluster.kubectl("api-resources", "--namespaced=false", "-o", "name").stdout.split()
    # "customresourcedefinitions.apiextensions.k8s.io" -> ("apiextensions.k8s.io", "customresourcedefinitions")
    cluster_scoped = {(name.partition(".")[2], name.partition(".")[0]) for name in names}
    objects = parse(template(values=[CI_VALUES]))
    defaults = parse(template())
    granted = the(defaults, "ClusterRole", "lambda-rollouts")["rules"]
    expected = [
        (tuple(rule["apiGroups"]), resource, tuple(rule["verbs"]))
        for rule in granted
        for resource in rule["resources"]
        if not any((group, resource.partition("/")[0]) in cluster_scoped for group in rule["apiGroups"])
    ]
    role = [obj for obj in objects if obj["kind"] == "Role" and obj["metadata"]["namespace"] == "payments"]
    actual = [
        (tuple(rule["apiGroups"]), resource, tuple(rule["verbs"]))
        for rule in the(role, "Role")["rules"]
        for resource in rule["resources"]
    ]
    assert actual == expected
    assert len(expected) < sum(len(rule["resources"]) for rule in granted), "nothing cluster-scoped to leave out"


# ---- install, upgrade, uninstall -------------------------------------------------------------------


def test_install_upgrade_and_uninstall(cluster: ControlPlane, tmp_path: Path) -> None:
    release, namespace = "helm-test", "helm-release"
    fullname = f"{release}-lambda-rollouts"  # the release name lacks "lambda-rollouts": it is appended
    account = f"{namespace}:{fullname}"
    restricted_namespace(cluster, namespace)
    kubeconfig = cluster.admin_kubeconfig
    crd_before = get(cluster, "crd", "lambdarollouts.lambda.rollouts.dev")["metadata"]["uid"]

    installed = helm("install", release, str(CHART), f"--namespace={namespace}", kubeconfig=kubeconfig)

    assert "STATUS: deployed" in installed.stdout
    notes = installed.stdout.split("NOTES:", 1)[1]
    assert "every namespace" in notes and "no IAM role annotation" in notes and "no ownership.config" in notes
    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--all-namespaces" in operator["args"] and not any(a.startswith("--ownership") for a in operator["args"])
    for kind, name in [
        ("serviceaccount", fullname),
        ("service", f"{fullname}-metrics"),
        ("poddisruptionbudget", fullname),
        ("role", f"{fullname}-leader-election"),
        ("rolebinding", f"{fullname}-leader-election"),
        ("servicemonitor", fullname),
        ("prometheusrule", fullname),
        ("configmap", f"{fullname}-dashboard"),
    ]:
        labels = get(cluster, kind, name, namespace)["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm", (kind, name)
    for kind, name in [
        ("clusterrole", fullname),
        ("clusterrolebinding", fullname),
        ("clusterrole", f"{fullname}-operator"),
        ("clusterrole", f"{fullname}-viewer"),
    ]:
        assert get(cluster, kind, name)["metadata"]["labels"]["app.kubernetes.io/instance"] == release
    # Helm leaves a CRD that exists alone (crds/ is only ever created, never updated).
    assert get(cluster, "crd", "lambdarollouts.lambda.rollouts.dev")["metadata"]["uid"] == crd_before
    # What the installed RBAC grants the operator's ServiceAccount, and what it does not.
    assert can(cluster, account, "watch", "lambdarollouts.lambda.rollouts.dev", "--all-namespaces")
    assert can(
        cluster, account, "patch", "lambdarollouts.lambda.rollouts.dev", "--subresource=status", "-n", "payments"
    )
    assert can(cluster, account, "update", "leases.coordination.k8s.io/lambda-rollouts-leader", "-n", namespace)
    assert not can(cluster, account, "update", "leases.coordination.k8s.io/another", "-n", namespace)
    assert not can(cluster, account, "delete", "lambdarollouts.lambda.rollouts.dev", "-n", "payments")

    # Upgrade: another replica count and an ownership config; the objects follow.
    ownership = tmp_path / "ownership.yaml"
    ownership.write_text((ROOT / "examples" / "config" / "ownership.yaml").read_text())
    upgrade = ("upgrade", release, str(CHART), f"--namespace={namespace}", "--reuse-values")
    helm(*upgrade, "--set=replicas=3", f"--set-file=ownership.config={ownership}", kubeconfig=kubeconfig)

    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment["spec"]["replicas"] == 3
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--ownership-config=/etc/lambda-rollouts/ownership/ownership.yaml" in operator["args"]
    configmap = get(cluster, "configmap", f"{fullname}-ownership", namespace)
    assert configmap["data"] == {"ownership.yaml": ownership.read_text()}
    first_checksum = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/ownership"]

    # A changed config changes the ConfigMap and the pod template (so the pods would roll).
    ownership.write_text("payments: [payments-*]\n")
    helm(*upgrade, f"--set-file=ownership.config={ownership}", kubeconfig=kubeconfig)

    configmap = get(cluster, "configmap", f"{fullname}-ownership", namespace)
    assert configmap["data"] == {"ownership.yaml": "payments: [payments-*]\n"}
    deployment = get(cluster, "deployment", fullname, namespace)
    assert deployment["spec"]["replicas"] == 3  # --reuse-values kept it
    assert deployment["spec"]["template"]["metadata"]["annotations"]["checksum/ownership"] != first_checksum
    assert len(release_secrets(cluster, release, namespace)) == 3
    history = json.loads(
        helm("history", release, f"--namespace={namespace}", "-o", "json", kubeconfig=kubeconfig).stdout
    )
    assert [entry["revision"] for entry in history] == [1, 2, 3]

    uninstalled = helm("uninstall", release, f"--namespace={namespace}", kubeconfig=kubeconfig)

    assert f'release "{release}" uninstalled' in uninstalled.stdout
    for kind, name in [
        ("deployment", fullname),
        ("serviceaccount", fullname),
        ("service", f"{fullname}-metrics"),
        ("configmap", f"{fullname}-ownership"),
        ("configmap", f"{fullname}-dashboard"),
        ("servicemonitor", fullname),
        ("prometheusrule", fullname),
        ("role", f"{fullname}-leader-election"),
    ]:
        assert absent(cluster, kind, name, namespace), (kind, name)
    for kind, name in [
        ("clusterrole", fullname),
        ("clusterrolebinding", fullname),
        ("clusterrole", f"{fullname}-viewer"),
    ]:
        assert absent(cluster, kind, name), (kind, name)
    assert release_secrets(cluster, release, namespace) == []
    # As Helm documents: a CRD from crds/ outlives the release (deleting it would delete every rollout).
    assert get(cluster, "crd", "lambdarollouts.lambda.rollouts.dev")["metadata"]["uid"] == crd_before


def test_a_namespaced_install_grants_only_the_watched_namespaces(cluster: ControlPlane) -> None:
    release, namespace = "ops", "helm-namespaced"
    account = f"{namespace}:rollouts"  # ci/namespaced-values.yaml sets fullnameOverride: rollouts
    restricted_namespace(cluster, namespace)
    for watched in ("payments", "search"):
        cluster.ensure_namespace(watched)
    kubeconfig = cluster.admin_kubeconfig

    installed = helm(
        "install", release, str(CHART), f"--namespace={namespace}", f"--values={CI_VALUES}", kubeconfig=kubeconfig
    )

    notes = installed.stdout.split("NOTES:", 1)[1]
    assert "payments, search" in notes and "Notifications: on" in notes and "IAM role" not in notes
    for watched in ("payments", "search"):
        assert can(cluster, account, "list", "lambdarollouts.lambda.rollouts.dev", "-n", watched)
        assert can(cluster, account, "create", "events", "-n", watched)
    assert not can(cluster, account, "list", "lambdarollouts.lambda.rollouts.dev", "-n", "default")
    assert not can(cluster, account, "list", "lambdarollouts.lambda.rollouts.dev", "--all-namespaces")
    assert not can(cluster, account, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert can(cluster, account, "update", "leases.coordination.k8s.io/lambda-rollouts-leader", "-n", namespace)
    assert absent(cluster, "clusterrolebinding", "rollouts") and absent(cluster, "clusterrole", "rollouts")
    configmap = get(cluster, "configmap", "rollouts-notifications", namespace)
    assert list(configmap["data"]) == ["notifications.yaml"]

    helm("uninstall", release, f"--namespace={namespace}", kubeconfig=kubeconfig)

    for watched in ("payments", "search"):
        assert absent(cluster, "role", "rollouts", watched) and absent(cluster, "rolebinding", "rollouts", watched)
    assert not can(cluster, account, "list", "lambdarollouts.lambda.rollouts.dev", "-n", "payments")
