"""The shipped Kubernetes manifests and the Dockerfile, checked without a cluster or a Docker daemon.

``kubectl kustomize manifests/`` must build, every object Kubernetes knows must pass
kubernetes-validate's strict schemas, the Prometheus Operator objects (CRDs that kubernetes-validate
does not know) are checked structurally, and the security properties the issue asks for are asserted
one by one so a careless edit fails loudly.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.kube.controlplane import MissingBinaries, kustomize_kubectl

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.31"
# Kinds kubernetes-validate has no schema for; checked structurally below instead.
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    try:
        kubectl = kustomize_kubectl()
    except MissingBinaries as missing:
        pytest.fail(str(missing), pytrace=False)
    built = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests")], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [obj for obj in by_kind(objects, kind) if name is None or obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def test_every_known_object_passes_strict_validation(objects: list[dict[str, Any]]) -> None:
    checked = 0
    for obj in objects:
        if obj["kind"] in PROMETHEUS_OPERATOR_KINDS:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 10


def test_the_base_contains_what_the_operator_needs(objects: list[dict[str, Any]]) -> None:
    kinds = {obj["kind"] for obj in objects}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
    } <= kinds
    crd = the(objects, "CustomResourceDefinition")
    assert crd["spec"]["names"]["shortNames"] == ["lro"]
    columns = {c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert {"Phase", "Function", "Stable", "Canary", "Weight", "Step", "Age"} <= columns


def test_namespaced_objects_live_in_the_operator_namespace(objects: list[dict[str, Any]]) -> None:
    namespace = the(objects, "Namespace")["metadata"]["name"]
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in objects:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == namespace, obj["metadata"]["name"]


def _rules(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, flattened across the role's rules."""
    flat: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                flat.setdefault((group, resource), set()).update(rule["verbs"])
    return flat


def test_operator_rbac_is_least_privilege(objects: list[dict[str, Any]]) -> None:
    cluster = _rules(the(objects, "ClusterRole", "lambda-rollouts"))
    assert cluster == {
        ("lambda.rollouts.dev", "lambdarollouts"): {"list", "watch", "patch"},
        ("lambda.rollouts.dev", "lambdarollouts/status"): {"patch"},
        ("", "events"): {"create"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    for role in (*by_kind(objects, "ClusterRole"), *by_kind(objects, "Role")):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], role["metadata"]["name"]
    leases = the(objects, "Role", "lambda-rollouts-leader-election")
    assert _rules(leases) == {("coordination.k8s.io", "leases"): {"get", "create", "update"}}
    named = [rule for rule in leases["rules"] if "update" in rule["verbs"]]
    assert named and all(rule.get("resourceNames") == ["lambda-rollouts-leader"] for rule in named)


def test_bindings_point_at_the_operator_service_account(objects: list[dict[str, Any]]) -> None:
    account = the(objects, "ServiceAccount")["metadata"]
    for binding in (the(objects, "ClusterRoleBinding"), the(objects, "RoleBinding")):
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["name"],
                "namespace": account["namespace"],
            }
        ]


def test_deployment_is_hardened_and_highly_available(objects: list[dict[str, Any]]) -> None:
    deployment = the(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == the(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {item["name"]: item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for item in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    assert container["args"][0] == "operator"
    assert not any(
        item["name"].startswith("AWS_SECRET") or item["name"] == "AWS_ACCESS_KEY_ID" for item in container["env"]
    )
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]


def test_metrics_service_and_monitor_select_the_operator(objects: list[dict[str, Any]]) -> None:
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    service = the(objects, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names

    monitor = the(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in service_ports and endpoint["path"] == "/metrics"


def test_scraped_series_keep_our_labels_and_the_alerts_job(objects: list[dict[str, Any]]) -> None:
    """honorLabels keeps the rollout's ``namespace``; the job the alerts select is the one scraped.

    The Prometheus Operator names the job after the Service, or after the Service's ``jobLabel``
    label when the ServiceMonitor sets one.
    """
    monitor = the(objects, "ServiceMonitor")
    assert all(endpoint.get("honorLabels") is True for endpoint in monitor["spec"]["endpoints"])
    service = the(objects, "Service")
    job_label = monitor["spec"].get("jobLabel")
    job = service["metadata"]["labels"][job_label] if job_label else service["metadata"]["name"]
    for rule in the(objects, "PrometheusRule")["spec"]["groups"]:
        for item in rule["rules"]:
            for selected in re.findall(r'job="([^"]*)"', item["expr"]):
                assert selected == job, f"{item.get('alert')}: selects job {selected!r}, scraped as {job!r}"


def test_prometheus_rules_and_dashboard_are_shipped(objects: list[dict[str, Any]]) -> None:
    dashboards = [c for c in by_kind(objects, "ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard")]
    assert dashboards and all(name.endswith(".json") for c in dashboards for name in c["data"])
    rules = by_kind(objects, "PrometheusRule")
    assert rules
    for rule in rules:
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        for group in rule["spec"]["groups"]:
            assert group["name"] and group["rules"]
            for item in group["rules"]:
                assert ("alert" in item) != ("record" in item) and item["expr"]


# ---- the notifications overlay docs/notifications.md shows -------------------------------------


def test_the_documented_notifications_overlay_builds_on_the_base(tmp_path: Path) -> None:
    # The overlay a kustomize user copies: built on this base, it mounts the config, passes the flag and
    # takes its secret from a Secret reference, and the Deployment still passes strict validation.
    page = (ROOT / "docs" / "notifications.md").read_text()
    (overlay,) = [
        block for block in re.findall(r"```yaml\n(.*?)\n```", page, re.DOTALL) if "kind: Kustomization" in block
    ]
    directory = tmp_path / "overlays" / "notifications"
    directory.mkdir(parents=True)
    base = os.path.relpath(ROOT / "manifests", directory)
    (directory / "kustomization.yaml").write_text(overlay.replace("../../manifests", base))
    config = (ROOT / "examples" / "config" / "notifications.yaml").read_text()
    (directory / "notifications.yaml").write_text(config)
    try:
        kubectl = kustomize_kubectl()
    except MissingBinaries as missing:
        pytest.fail(str(missing), pytrace=False)
    built = subprocess.run(
        [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    (configmap,) = [
        o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("lambda-rollouts-notif")
    ]
    assert configmap["data"] == {"notifications.yaml": config}
    deployment = the(objects, "Deployment")
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    (operator,) = pod["containers"]
    assert "--notifications=/etc/lambda-rollouts/notifications/notifications.yaml" in operator["args"]
    mount = {m["name"]: m for m in operator["volumeMounts"]}["notifications"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/lambda-rollouts/notifications", True)
    volume = {v["name"]: v for v in pod["volumes"]}["notifications"]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]  # the generated name, hash included
    env = {item["name"]: item for item in operator["env"]}
    assert set(env["SLACK_WEBHOOK_URL"]["valueFrom"]) == {"secretKeyRef"}


# ---- Dockerfile: no daemon here, so lint the properties that matter -----------------------------


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile's instructions, without comment lines (which may mention what they forbid)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith("#"))


def _stages(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE | re.IGNORECASE)


def test_dockerfile_is_multi_stage_on_slim_python(dockerfile: str) -> None:
    stages = _stages(dockerfile)
    assert len(stages) >= 2
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", stages[-1]), "the exact patch release the tests use"
    *_, last_from = re.finditer(r"^FROM .*$", dockerfile, flags=re.MULTILINE)
    final = dockerfile[last_from.end() :]
    # The final stage copies the ready venv and installs nothing: no compilers, no pip at build time.
    assert re.search(r"^COPY --from=\S+ /opt/venv /opt/venv", final, flags=re.MULTILINE)
    assert not re.search(r"\b(apt-get|apk|pip|gcc|build-essential)\b", final)


def test_dockerfile_runs_as_non_root_with_the_cli_entrypoint(dockerfile: str) -> None:
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] == "65532"
    assert 'ENTRYPOINT ["lambda-rollouts"]' in dockerfile
    assert 'CMD ["operator"]' in dockerfile


def test_dockerfile_bakes_in_no_credentials(dockerfile: str) -> None:
    assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)", dockerfile)
    assert not re.search(r"\.aws|credentials|kubeconfig|\.kube", dockerfile, flags=re.IGNORECASE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".aws", ".kube"} <= set(ignored) | {line.rstrip("/") for line in ignored}
