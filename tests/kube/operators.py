"""``lambda-rollouts operator`` processes against the real control plane, each with its own credentials.

The operator under test is the installed command in a subprocess, as a pod would run it: a
kubeconfig holding a ServiceAccount token (``KUBECONFIG``), so the apiserver authorizes every
request by the RBAC the test bound to that account, ``AWS_ENDPOINT_URL`` of the strict emulator,
and an ``AWS_ACCESS_KEY_ID`` of its own, which the emulator's call log records on every call: that
is how a test tells which of two replicas wrote to AWS. Its log (text, one line a record) is a
file the test reads: a refused request shows there as the apiserver's own message, naming the
verb and the resource (``cannot patch resource "lambdarollouts/status" ...``).

The RBAC objects come from ``kubectl kustomize manifests/`` (or an overlay), never from a copy in
the tests, so what is proven here is what ships. ``rbac_variant`` re-homes them (other names,
another namespace) and drops one verb, for the least-privilege cases.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from controller.emulator import Emulator
from tests.integration.helpers import free_port
from tests.kube.controlplane import BIN_DIR, ROOT, ControlPlane, die_with_parent

T = TypeVar("T")

CONTROLLER_NAMESPACE = "lambda-rollouts"  # manifests/kustomization.yaml's namespace
SERVICE_ACCOUNT = "lambda-rollouts"
CLUSTER_ROLE = "lambda-rollouts"
LEASE_ROLE = "lambda-rollouts-leader-election"
LEASE_NAME = "lambda-rollouts-leader"
RBAC_KINDS = frozenset({"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})
GROUP, VERSION, PLURAL = "lambda.rollouts.dev", "v1alpha1", "lambdarollouts"


def manifest_objects(plane: ControlPlane, directory: Path = ROOT / "manifests") -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``: every object the base (or overlay) renders."""
    built = plane.kubectl("kustomize", str(directory)).stdout
    return [obj for obj in yaml.safe_load_all(built) if obj]


def the(objects: Sequence[Mapping[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind and obj["metadata"]["name"] == name]
    return copy.deepcopy(dict(found))


def apply_objects(plane: ControlPlane, objects: Sequence[Mapping[str, Any]]) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


@dataclass(frozen=True)
class Removal:
    """One verb taken out of the rule that grants it on ``resource``, in the ClusterRole or the Role."""

    kind: str  # "ClusterRole" (lambda-rollouts) or "Role" (the leader election's)
    resource: str
    verb: str

    @property
    def id(self) -> str:
        return f"{self.resource.replace('/', '-')}-{self.verb}"


def grants(role: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(resource, verb) pairs a role's rules grant."""
    return {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}


def rbac_variant(
    objects: Sequence[Mapping[str, Any]], *, namespace: str, suffix: str, removal: Removal | None = None
) -> list[dict[str, Any]]:
    """The controller's ServiceAccount, ClusterRole, Role and bindings, renamed with ``suffix`` and the
    namespaced ones moved to ``namespace``, less ``removal`` (a rule left with no verb is dropped)."""
    cluster_role = the(objects, "ClusterRole", CLUSTER_ROLE)
    lease_role = the(objects, "Role", LEASE_ROLE)
    for kind, role in (("ClusterRole", cluster_role), ("Role", lease_role)):
        role["metadata"] = {"name": f"{role['metadata']['name']}-{suffix}"}
        if kind == "Role":
            role["metadata"]["namespace"] = namespace
        if removal is not None and removal.kind == kind:
            (rule,) = [r for r in role["rules"] if removal.resource in r["resources"] and removal.verb in r["verbs"]]
            assert rule["resources"] == [removal.resource], rule  # the verb goes for this resource only
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != removal.verb]
            role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    subject = {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace}},
        cluster_role,
        lease_role,
        binding("ClusterRoleBinding", cluster_role["metadata"]["name"], role_kind="ClusterRole", subject=subject),
        binding("RoleBinding", lease_role["metadata"]["name"], role_kind="Role", subject=subject, namespace=namespace),
    ]


def binding(
    kind: str, name: str, *, role_kind: str, subject: Mapping[str, str], namespace: str | None = None
) -> dict[str, Any]:
    metadata: dict[str, str] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": metadata,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": name},
        "subjects": [dict(subject)],
    }


# ---- the operator process ------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorProcess:
    """One running ``lambda-rollouts operator``: its process, log, metrics port and AWS access key."""

    identity: str
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    access_key: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self, *fragments: str) -> list[str]:
        """Log lines containing every fragment."""
        return [line for line in self.text().splitlines() if all(f in line for f in fragments)]

    def ready(self) -> bool:
        """``/readyz`` answers 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metric(self, name: str) -> float | None:
        """The value of an unlabelled sample ``name`` on ``/metrics`` (None when absent or unreachable)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return None

    def terminate(self, *, within: float = 15.0) -> int:
        """SIGTERM, and the exit code once it has stopped (SIGKILL if it outlives ``within``)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(within)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"operator {self.identity} did not stop within {within} s:\n{self.tail()}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def when(self, *fragments: str) -> float:
        """The time (epoch) of the one log line containing every fragment."""
        (line,) = self.lines(*fragments)
        return log_time(line)


def log_time(line: str) -> float:
    """The epoch of a text log line (``2026-12-01 10:42:26,809 ...``, local time)."""
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def parse_micro_time(value: str) -> float:
    """The epoch of a Kubernetes MicroTime (``2026-12-01T10:42:26.809123Z``)."""
    return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC).timestamp()


def operator_env(*, kubeconfig: Path, aws_url: str, access_key: str, home: Path) -> dict[str, str]:
    """The operator's whole environment: nothing inherited that could point it elsewhere."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def operator(
    *,
    kubeconfig: Path,
    aws: Emulator,
    directory: Path,
    identity: str = "op-a",
    lease_namespace: str = CONTROLLER_NAMESPACE,
    namespaces: Sequence[str] = (),
    interval: float = 0.2,
    lease_duration: float = 2.0,
    extra_args: Sequence[str] = (),
    aws_url: str | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    before_start: Callable[[int], object] | None = None,
) -> Iterator[OperatorProcess]:
    """``lambda-rollouts operator`` for the block; stopped with SIGTERM on the way out (a test may
    have killed it already). Its log is ``DIRECTORY/IDENTITY.log``; AWS is ``aws`` unless ``aws_url``
    points elsewhere (a fault proxy in front of it).

    ``command``: the operator's own arguments (a Deployment's ``args``) instead of ``--identity``,
    ``--lease-namespace`` and ``--namespace`` from the keywords, with ``env`` (``POD_NAME``...);
    the test's tick, lease duration, metrics port and text log are added after them either way.
    ``before_start(port)`` runs once the metrics port is chosen, before the process starts (a config
    file that must name the operator's own URL).
    """
    port = free_port()
    if before_start is not None:
        before_start(port)
    access_key = f"AKIA{identity.upper().replace('-', '')}"
    log = directory / f"{identity}.log"
    home = directory / f"home-{identity}"
    home.mkdir(exist_ok=True)
    own = command or [
        "operator",
        f"--identity={identity}",
        f"--lease-namespace={lease_namespace}",
        *(f"--namespace={namespace}" for namespace in namespaces),
    ]
    args = [
        sys.executable,
        "-m",
        "controller.cli",
        *own,
        f"--interval={interval}",
        f"--lease-duration={lease_duration}",
        f"--metrics-port={port}",
        "--log-format=text",
        "--log-level=INFO",
        *extra_args,
    ]
    environment = {
        **operator_env(kubeconfig=kubeconfig, aws_url=aws_url or aws.url, access_key=access_key, home=home),
        **(env or {}),
    }
    with log.open("wb") as stream:
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    process = OperatorProcess(identity=identity, popen=popen, log=log, metrics_port=port, access_key=access_key)
    try:
        yield process
    finally:
        if popen.poll() is None:
            process.terminate()


def eventually(check: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = "it") -> T:
    """Poll ``check()`` until it returns something truthy; that result, or an AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ---- reading the cluster as the admin ------------------------------------------------------------


def get_json(plane: ControlPlane, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(plane.kubectl("get", *args, "-o", "json").stdout)
    return result


def rollout(plane: ControlPlane, namespace: str, name: str, *, managed_fields: bool = False) -> dict[str, Any] | None:
    shown = ("--show-managed-fields",) if managed_fields else ()
    found = plane.kubectl("get", "lro", name, "-n", namespace, "-o", "json", "--ignore-not-found", *shown)
    return json.loads(found.stdout) if found.stdout.strip() else None


def status_of(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict((rollout(plane, namespace, name) or {}).get("status") or {})


def phase_is(plane: ControlPlane, namespace: str, name: str, *phases: str) -> Callable[[], bool]:
    return lambda: status_of(plane, namespace, name).get("phase") in phases


def events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(plane, "events", "-n", namespace)["items"]
    # Timestamps have whole seconds; resourceVersions grow with every write (etcd's revision).
    return sorted(items, key=lambda e: int(e["metadata"]["resourceVersion"]))


def delete_rollouts(plane: ControlPlane, namespace: str) -> None:
    """Every LambdaRollout of ``namespace`` gone now, whether or not an operator would release it."""
    listed = json.loads(plane.kubectl("get", "lro", "-n", namespace, "-o", "json", check=False).stdout or "{}")
    for item in listed.get("items", []):
        if item["metadata"].get("finalizers"):
            release = ("--type=merge", "-p", '{"metadata":{"finalizers":null}}')
            plane.kubectl("patch", "lro", item["metadata"]["name"], "-n", namespace, *release, check=False)
    plane.kubectl("delete", "lro", "--all", "-n", namespace, "--wait=false", check=False)


def lease(plane: ControlPlane, namespace: str = CONTROLLER_NAMESPACE) -> dict[str, Any] | None:
    found = plane.kubectl("get", "lease", LEASE_NAME, "-n", namespace, "-o", "json", "--ignore-not-found")
    return json.loads(found.stdout) if found.stdout.strip() else None


def holder(plane: ControlPlane, namespace: str = CONTROLLER_NAMESPACE) -> str | None:
    return str(((lease(plane, namespace) or {}).get("spec") or {}).get("holderIdentity") or "") or None


def apply_rollout(plane: ControlPlane, document: Mapping[str, Any], *, kubeconfig: Path | None = None) -> None:
    plane.kubectl("apply", "-f", "-", input=json.dumps(document), kubeconfig=kubeconfig)


def kubectl_plugin_env(*, kubeconfig: Path, home: Path) -> dict[str, str]:
    """What a user's shell has: the pinned kubectl and the installed ``kubectl-lambda_rollouts`` on PATH."""
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{BIN_DIR}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
    }


def kubectl_as_user(*args: str, kubeconfig: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """``kubectl ARGS`` the way a user runs it (plugins resolved on PATH), with their kubeconfig."""
    return subprocess.run(
        ["kubectl", *args],
        env=kubectl_plugin_env(kubeconfig=kubeconfig, home=home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
