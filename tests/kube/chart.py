"""The Helm chart for the tests: the pinned ``helm``, rendering, and what "the same objects as kustomize" means.

``helm`` is the build ``make kube-binaries`` makes (``helm.sh/helm/v3`` at the pin of
``tests/kube/gobuild``). It runs with its own HOME and Helm directories in a temporary folder, so a
test never reads or writes the user's repositories, registry logins or kube cache.

The chart reads files of the repository through symlinks (``crds/``, ``files/``). Helm follows them
and logs one line per link on stderr (``walk.go:NN: found symbolic link in path: ...``); that line is
expected, anything else on stderr is not.

``comparable`` says what may differ between ``helm template`` and ``kubectl kustomize manifests/``:
Helm's own labels (chart, managed-by, instance) and the content hash kustomize appends to a
generated ConfigMap's name. The Namespace is the one object of the kustomize base the chart does
not render: Helm installs into a namespace it does not own.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.kube.controlplane import ROOT, binary, kustomize_kubectl

CHART = ROOT / "charts" / "lambda-rollouts"
CI_VALUES = CHART / "ci" / "namespaced-values.yaml"
# The release that renders the kustomize base's names: fullname = the release name.
RELEASE = "lambda-rollouts"
NAMESPACE = "lambda-rollouts"
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance")
_SYMLINK_NOTE = re.compile(
    r"^walk\.go:\d+: found symbolic link in path: .+ resolves to .+\. Contents of linked file included and used$"
)


@functools.cache
def _home() -> Path:
    """helm's HOME for this process, removed when it exits."""
    home = Path(tempfile.mkdtemp(prefix="lambda-rollouts-helm-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm; with ``check``, a non-zero exit or any stderr but the symlink notes fails the test.

    The returned ``stderr`` has the symlink notes removed.
    """
    home = _home()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run(
        [str(binary("helm")), *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )
    stderr = "\n".join(line for line in result.stderr.splitlines() if not _SYMLINK_NOTE.match(line))
    result = subprocess.CompletedProcess(result.args, result.returncode, result.stdout, stderr)
    if check:
        assert result.returncode == 0, f"helm {' '.join(args)} exited {result.returncode}:\n{stderr}"
        assert stderr == "", f"helm {' '.join(args)} wrote to stderr:\n{stderr}"
    return result


def template(*args: str, release: str = RELEASE, namespace: str = NAMESPACE, values: Iterable[Path] = ()) -> str:
    """``helm template`` of the chart, CRDs included, as text."""
    files = [f"--values={path}" for path in values]
    return helm("template", release, str(CHART), f"--namespace={namespace}", "--include-crds", *files, *args).stdout


def render(
    *args: str, release: str = RELEASE, namespace: str = NAMESPACE, values: Iterable[Path] = ()
) -> list[dict[str, Any]]:
    """``template``'s objects."""
    return parse(template(*args, release=release, namespace=namespace, values=values))


def parse(text: str) -> list[dict[str, Any]]:
    return [obj for obj in yaml.safe_load_all(text) if obj]


def kustomize() -> list[dict[str, Any]]:
    """``kubectl kustomize manifests/``'s objects."""
    built = subprocess.run(
        [kustomize_kubectl(), "kustomize", str(ROOT / "manifests")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return parse(built)


def generated_configmaps() -> frozenset[str]:
    """The names of the ConfigMaps the kustomize base generates (kustomize suffixes them with a hash)."""
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    return frozenset(generator["name"] for generator in kustomization.get("configMapGenerator", []))


def key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name): an object's identity in a rendering."""
    metadata = obj["metadata"]
    return obj["kind"], metadata.get("namespace", ""), metadata["name"]


def by_key(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    indexed: dict[tuple[str, str, str], dict[str, Any]] = {}
    for obj in objects:
        assert key(obj) not in indexed, f"rendered twice: {key(obj)}"
        indexed[key(obj)] = obj
    return indexed


def the(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[key(obj) for obj in found]}"
    return found[0]


def _without_helm_labels(labels: Mapping[str, str] | None) -> dict[str, str] | None:
    if labels is None:
        return None
    return {name: value for name, value in labels.items() if name not in HELM_LABELS}


def comparable(obj: Mapping[str, Any], *, generated: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``obj`` without what may differ between the chart and the kustomize base (see the module docstring).

    Only labels are touched, never selectors: a selector is immutable once installed, so both must
    select alike.
    """
    copy: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(obj)))
    metadata = copy["metadata"]
    if (labels := _without_helm_labels(metadata.get("labels"))) is not None:
        metadata["labels"] = labels
    template_metadata = copy.get("spec", {}).get("template", {}).get("metadata")
    if template_metadata and (labels := _without_helm_labels(template_metadata.get("labels"))) is not None:
        template_metadata["labels"] = labels
    if copy["kind"] == "ConfigMap":
        base = re.sub(r"-[a-z0-9]{10}$", "", metadata["name"])
        if base in generated:
            metadata["name"] = base
    return copy
