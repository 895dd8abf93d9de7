"""The Helm chart (``charts/lambda-rollouts``) without a cluster: one source of truth with the kustomize base.

``helm template`` with the default values must render exactly the objects of ``kubectl kustomize
manifests/`` but the Namespace (what may differ is in ``tests.kube.chart``); the files both need are
the repository's own, through symlinks that helm follows and ``helm package`` resolves; the values
schema refuses bad values; every value the chart offers renders what it says. The real apiserver's
verdict on the same renderings, and install / upgrade / uninstall, are in ``tests/kube/test_helm.py``.
"""

from __future__ import annotations

import difflib
import hashlib
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import controller
from controller.kube.selector import Selector
from tests.kube.chart import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    by_key,
    comparable,
    generated_configmaps,
    helm,
    kustomize,
    render,
    the,
)
from tests.kube.controlplane import ROOT, MissingBinaries, binary

# Chart file -> the repository file it is (a symlink): one file each, never a second copy.
SHARED = {
    "crds/lambdarollout.yaml": "crds/lambdarollout.yaml",
    "files/rbac.yaml": "manifests/rbac.yaml",
    "files/prometheusrule.yaml": "manifests/prometheusrule.yaml",
    "files/lambda-rollouts.json": "manifests/grafana/lambda-rollouts.json",
}


@pytest.fixture(scope="module", autouse=True)
def _helm_is_built() -> None:
    try:
        binary("helm")
    except MissingBinaries as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def full() -> list[dict[str, Any]]:
    """The chart with every optional part on (ci/namespaced-values.yaml), released as ``ops`` in ``platform``."""
    return render(release="ops", namespace="platform", values=[CI_VALUES])


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    operators: list[dict[str, Any]] = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    (operator,) = operators
    return operator


def rules(role: dict[str, Any]) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """(apiGroup, resource, resourceNames) -> verbs, flattened across a role's rules."""
    flat: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flat.setdefault((group, resource, tuple(rule.get("resourceNames", ()))), set()).update(rule["verbs"])
    return flat


# ---- one source of truth ---------------------------------------------------------------------------


def test_the_chart_is_versioned_with_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == controller.__version__
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    assert [image["newTag"] for image in kustomization["images"]] == [controller.__version__]


def test_the_shared_files_are_the_repository_files_by_symlink() -> None:
    for in_chart, source in SHARED.items():
        link = CHART / in_chart
        assert link.is_symlink(), f"{in_chart} must be a symlink to {source}, not a copy"
        assert link.resolve() == (ROOT / source).resolve()
    # Nothing else in the chart is a link, and no template repeats a shared file.
    links = {path.relative_to(CHART).as_posix() for path in CHART.rglob("*") if path.is_symlink()}
    assert links == set(SHARED)


def test_helm_package_stores_the_linked_files_contents(tmp_path: Path) -> None:
    helm("package", str(CHART), f"--destination={tmp_path}")
    (package,) = tmp_path.glob("lambda-rollouts-*.tgz")
    with tarfile.open(package) as archive:
        members = {member.name: member for member in archive.getmembers()}
        for in_chart, source in SHARED.items():
            member = members[f"lambda-rollouts/{in_chart}"]
            assert member.isfile(), f"{in_chart} is packaged as a link"
            stored = archive.extractfile(member)
            assert stored is not None and stored.read() == (ROOT / source).read_bytes()
    assert not any(name.startswith("lambda-rollouts/ci/") for name in members), "ci/ is for the tests only"


def test_the_default_rendering_is_the_kustomize_base(default: list[dict[str, Any]]) -> None:
    generated = generated_configmaps()
    base = [obj for obj in kustomize() if obj["kind"] != "Namespace"]
    expected = by_key(comparable(obj, generated=generated) for obj in base)
    rendered = by_key(comparable(obj) for obj in default)
    assert sorted(rendered) == sorted(expected)
    for key, obj in expected.items():
        if rendered[key] != obj:
            pytest.fail(f"{key} differs (- kustomize, + helm):\n{diff(obj, rendered[key])}", pytrace=False)


def diff(expected: dict[str, Any], actual: dict[str, Any]) -> str:
    before, after = (yaml.safe_dump(obj, sort_keys=True).splitlines() for obj in (expected, actual))
    return "\n".join(difflib.unified_diff(before, after, lineterm="", n=2))


def test_the_only_object_left_to_the_user_is_the_namespace() -> None:
    (namespace,) = [obj for obj in kustomize() if obj["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == NAMESPACE


def test_helm_labels_every_object_of_the_release(default: list[dict[str, Any]]) -> None:
    for obj in default:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "lambda-rollouts", obj["metadata"]["name"]
        if obj["kind"] != "CustomResourceDefinition":  # crds/ is installed as it is, never templated
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/instance"] == "lambda-rollouts"


@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_the_lease_the_operator_takes_is_the_one_its_role_names(source: str, default: list[dict[str, Any]]) -> None:
    objects = kustomize() if source == "kustomize" else default
    leases = rules(the(objects, "Role", "lambda-rollouts-leader-election"))
    (named,) = {names for (_, resource, names) in leases if names}
    args = container(objects)["args"]
    assert [arg.removeprefix("--lease-name=") for arg in args if arg.startswith("--lease-name=")] == list(named)


# ---- lint and the values schema --------------------------------------------------------------------


@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
@pytest.mark.parametrize("values", [None, CI_VALUES], ids=["default", "namespaced"])
def test_helm_lint_is_clean(strict: bool, values: Path | None) -> None:
    args = ["lint", str(CHART), *(["--strict"] if strict else []), *([f"--values={values}"] if values else [])]
    result = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


BAD_VALUES = {
    "replicas=0": "/replicas",
    "replicas=two": "/replicas",
    "replica=2": "additional properties 'replica' not allowed",
    "watchNamespaces={Payments}": "/watchNamespaces/0",
    "rbac.namespaced=yes-please": "/rbac/namespaced",
    "logFormat=xml": "/logFormat",
    "metrics.port=80": "/metrics/port",
    "serviceMonitor.interval=30": "/serviceMonitor/interval",
    "ownership.config.payments[0]=payments-*": "/ownership/config",
    "notifications.secretEnv[0].name=SLACK_WEBHOOK_URL": "missing properties 'secretName', 'key'",
    "notifications.secretEnv[0].value=https://hooks.slack.com/x": "/notifications/secretEnv/0",
    "extraEnv[0].name=POD_NAME": "/extraEnv/0",
    "fullnameOverride=a-name-far-too-long-for-a-service-with-its-suffix": "/fullnameOverride",
}


@pytest.mark.parametrize("value", list(BAD_VALUES), ids=list(BAD_VALUES))
def test_the_schema_refuses_bad_values(value: str) -> None:
    for command in ("template", "lint"):
        args = [command, *(["refused"] if command == "template" else []), str(CHART), f"--set={value}"]
        result = helm(*args, check=False)
        assert result.returncode != 0, f"helm {command} accepted {value}"
        assert BAD_VALUES[value] in result.stdout + result.stderr, result.stdout + result.stderr


# ---- what the values render ------------------------------------------------------------------------


def test_a_release_of_another_name_prefixes_every_name(default: list[dict[str, Any]]) -> None:
    objects = render(release="team", namespace="team-system")
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    assert ("Deployment", "team-lambda-rollouts") in names
    assert ("Service", "team-lambda-rollouts-metrics") in names
    assert ("ClusterRole", "team-lambda-rollouts-viewer") in names
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"]["name"].startswith("team-lambda-rollouts"), obj["metadata"]["name"]
            assert obj["metadata"].get("namespace", "team-system") == "team-system"
    for binding in (the(objects, "ClusterRoleBinding"), the(objects, "RoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "team-lambda-rollouts", "namespace": "team-system"}
        ]
    # The Lease keeps its name (the Role's resourceNames), whatever the release is called.
    assert "--lease-name=lambda-rollouts-leader" in container(objects)["args"]


def test_cluster_wide_by_default(default: list[dict[str, Any]]) -> None:
    assert "--all-namespaces" in container(default)["args"]
    assert not any(arg.startswith("--namespace") for arg in container(default)["args"])
    assert the(default, "ClusterRoleBinding")["roleRef"]["name"] == "lambda-rollouts"


def test_namespaced_rbac_grants_the_cluster_roles_namespaced_rules_in_each_watched_namespace(
    default: list[dict[str, Any]], full: list[dict[str, Any]]
) -> None:
    cluster = rules(the(default, "ClusterRole", "lambda-rollouts"))
    cluster_scoped = {("apiextensions.k8s.io", "customresourcedefinitions"), ("", "namespaces")}
    namespaced_rules = {rule: verbs for rule, verbs in cluster.items() if rule[:2] not in cluster_scoped}
    assert namespaced_rules and namespaced_rules != cluster
    for namespace in ("payments", "search"):
        role = [obj for obj in full if obj["kind"] == "Role" and obj["metadata"]["namespace"] == namespace]
        (binding,) = [obj for obj in full if obj["kind"] == "RoleBinding" and obj["metadata"]["namespace"] == namespace]
        assert [rules(r) for r in role] == [namespaced_rules]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollouts"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rollouts", "namespace": "platform"}]
    # No cluster-wide grant for the operator; the users' aggregated roles and the Lease Role stay.
    assert not [obj for obj in full if obj["kind"] == "ClusterRoleBinding"]
    assert {obj["metadata"]["name"] for obj in full if obj["kind"] == "ClusterRole"} == {
        "rollouts-operator",
        "rollouts-viewer",
    }
    lease_role = the(full, "Role", "rollouts-leader-election")
    assert lease_role["metadata"]["namespace"] == "platform"
    args = container(full)["args"]
    assert "--namespace=payments" in args and "--namespace=search" in args and "--all-namespaces" not in args


def test_namespaced_rbac_without_a_list_watches_the_release_namespace() -> None:
    objects = render("--set=rbac.namespaced=true", namespace="team-a", release="lambda-rollouts")
    assert "--namespace=team-a" in container(objects)["args"]
    role = the(objects, "Role", "lambda-rollouts")
    assert role["metadata"]["namespace"] == "team-a"


def test_watching_namespaces_with_a_cluster_role() -> None:
    objects = render("--set=watchNamespaces={payments}")
    assert "--namespace=payments" in container(objects)["args"]
    assert the(objects, "ClusterRoleBinding")["roleRef"]["name"] == "lambda-rollouts"


@pytest.mark.parametrize(("value", "flag"), [("ownership", "--ownership-config"), ("accounts", "--accounts")])
def test_the_ownership_and_accounts_configs_are_mounted_and_named_by_their_flags(
    full: list[dict[str, Any]], value: str, flag: str
) -> None:
    config = yaml.safe_load(CI_VALUES.read_text())[value]["config"]
    configmap = the(full, "ConfigMap", f"rollouts-{value}")
    assert configmap["data"] == {f"{value}.yaml": config}
    operator = container(full)
    (path,) = [arg.removeprefix(f"{flag}=") for arg in operator["args"] if arg.startswith(f"{flag}=")]
    mount = {m["name"]: m for m in operator["volumeMounts"]}[value]
    assert path == f"{mount['mountPath']}/{value}.yaml" and mount["readOnly"] is True
    volumes = {v["name"]: v for v in the(full, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[value]["configMap"]["name"] == f"rollouts-{value}"
    annotations = the(full, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations[f"checksum/{value}"] == hashlib.sha256(config.encode()).hexdigest()


def test_a_shard_is_a_selector(default: list[dict[str, Any]]) -> None:
    assert not any(arg.startswith("--selector") for arg in container(default)["args"])
    objects = render("--set-string=selector=team in (a\\,b)")
    shard = container(objects)
    assert "--selector=team in (a,b)" in shard["args"]
    # Each shard leads a Lease of its own, named as the operator derives it, and its Role grants that one.
    lease = Selector.parse("team in (a,b)").lease_name("lambda-rollouts-leader")
    assert f"--lease-name={lease}" in shard["args"]
    (role,) = [obj for obj in objects if obj["kind"] == "Role" and obj["metadata"]["name"].endswith("-leader-election")]
    assert [rule.get("resourceNames") for rule in role["rules"] if rule.get("resourceNames")] == [[lease]]


def test_notifications_are_off_by_default(default: list[dict[str, Any]]) -> None:
    # Without a config the flag is not passed: the operator then runs without notifications.
    assert not any(arg.startswith("--notifications") for arg in container(default)["args"])
    assert not [obj for obj in default if obj["kind"] == "ConfigMap" and "notifications" in obj["metadata"]["name"]]
    assert "annotations" not in the(default, "Deployment")["spec"]["template"]["metadata"]


def test_notifications_come_with_their_secrets_by_reference_only(full: list[dict[str, Any]]) -> None:
    values = yaml.safe_load(CI_VALUES.read_text())["notifications"]
    assert the(full, "ConfigMap", "rollouts-notifications")["data"] == {"notifications.yaml": values["config"]}
    operator = container(full)
    assert "--notifications=/etc/lambda-rollouts/notifications/notifications.yaml" in operator["args"]
    env = {item["name"]: item for item in operator["env"]}
    assert env["OPS_HOOK_SECRET"] == {
        "name": "OPS_HOOK_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "lambda-rollouts-notifications", "key": "ops-hook-secret"}},
    }
    # No secret in a value: everything but the downward API and the region comes from a Secret.
    for item in operator["env"]:
        if item["name"] not in {"POD_NAME", "POD_NAMESPACE", "AWS_REGION"}:
            assert set(item) == {"name", "valueFrom"} and set(item["valueFrom"]) == {"secretKeyRef"}, item
    mounts = {m["mountPath"]: m for m in operator["volumeMounts"]}
    volumes = {v["name"]: v for v in the(full, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    slack = mounts["/etc/lambda-rollouts/slack"]
    assert slack["readOnly"] is True
    assert volumes[slack["name"]]["secret"] == {"secretName": "lambda-rollouts-slack", "defaultMode": 0o440}
    assert not [obj for obj in full if obj["kind"] == "Secret"]


def test_monitoring_values(full: list[dict[str, Any]]) -> None:
    monitor = the(full, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert [endpoint["interval"] for endpoint in monitor["spec"]["endpoints"]] == ["15s"]
    rule = the(full, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    source = yaml.safe_load((ROOT / "manifests" / "prometheusrule.yaml").read_text())
    assert rule["spec"] == source["spec"]
    dashboard = the(full, "ConfigMap", "rollouts-dashboard")
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "Delivery"}
    assert dashboard["data"] == {"lambda-rollouts.json": (ROOT / "manifests/grafana/lambda-rollouts.json").read_text()}


def test_monitoring_can_be_turned_off() -> None:
    off = render("--set=serviceMonitor.enabled=false,prometheusRule.enabled=false,dashboard.enabled=false")
    kinds = {obj["kind"] for obj in off}
    assert not kinds & {"ServiceMonitor", "PrometheusRule", "ConfigMap"}
    moved = render("--set=dashboard.namespace=grafana")
    assert the(moved, "ConfigMap")["metadata"]["namespace"] == "grafana"


def test_the_deployment_values(full: list[dict[str, Any]]) -> None:
    deployment = the(full, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    operator = container(full)
    assert operator["image"] == "registry.example.com/platform/lambda-rollouts:0.1.0"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"} and pod["priorityClassName"] == "platform-high"
    assert {"name": "AWS_REGION", "value": "eu-west-1"} in operator["env"]
    assert "--lease-duration=20" in operator["args"] and operator["args"][-1] == "--interval=10"
    account = the(full, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/lambda-rollouts"
    }
    # The hardening is the default's, whatever else changed.
    assert pod["securityContext"] == the(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
