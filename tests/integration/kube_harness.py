"""A Kubernetes API server for the operator tests: kmock's emulator plus what a real apiserver does.

kmock stores objects and serves list/watch/patch/delete, but keeps no ``resourceVersion``, ``uid``
or ``generation``, has no PUT and no optimistic concurrency. kopf relies on the first three (its
finalizer patches test ``/metadata/resourceVersion``), the leader election relies on the last two
(a Lease is taken with a PUT carrying the resourceVersion that was read; a stale one gets 409).
``StrictKubernetesEmulator`` adds exactly those, the way the apiserver does them:

- create: ``uid``, ``resourceVersion``, ``generation: 1``, ``creationTimestamp``; ``generateName``;
- every write bumps one cluster-wide ``resourceVersion`` counter (like etcd's revision);
- ``generation`` grows when ``spec`` changes; ``/status`` patches change only ``status`` and patches
  of the main resource never change ``status`` (the CRD declares the status subresource);
- a merge patch or PUT carrying a stale ``metadata.resourceVersion`` -> 409 Conflict; a failed
  JSON-patch ``test`` -> 422, as the apiserver answers (kopf re-reads and retries on 422);
- lists carry ``kind: <Kind>List`` and the current resourceVersion.

``kube_cluster()`` starts it on 127.0.0.1 with the resources kopf discovers (namespaces, CRDs, our
LambdaRollout, Events, Leases), the ``default`` namespace and the CRD object from ``crds/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import kmock
import yaml
from kmock._internal import dicts as kmock_dicts
from kmock._internal import rendering

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "lambda.rollouts.dev", "v1alpha1", "lambdarollouts"
ROLLOUTS = kmock.resource(group=GROUP, version=VERSION, plural=PLURAL)
EVENTS = kmock.resource(group="", version="v1", plural="events")
LEASES = kmock.resource(group="coordination.k8s.io", version="v1", plural="leases")
NAMESPACES = kmock.resource(group="", version="v1", plural="namespaces")
CRDS = kmock.resource(group="apiextensions.k8s.io", version="v1", plural="customresourcedefinitions")


class StrictKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersion, uid, generation, PUT and optimistic concurrency."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._revisions = itertools.count(1)

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None:
            request = self._prepare(request)
        return await super()._handle(request)

    def _prepare(self, request: rendering.Request) -> rendering.Request:
        """Rewrite a writing request so that kmock's plain store behaves like the apiserver."""
        if request.action == kmock.action.CREATE and isinstance(request.data, Mapping):
            body = copy.deepcopy(dict(request.data))
            meta = body.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.update(
                uid=str(uuid.uuid4()),
                resourceVersion=self._next_revision(),
                generation=1,
                creationTimestamp=_now(),
            )
            return _rewrite(request, data=body)

        is_put = request.method == kmock.method.PUT and request.name is not None
        if request.action != kmock.action.UPDATE and not is_put:
            return request
        current = self._current(request)
        if current is None:
            return _rewrite(request, action=kmock.action.UPDATE)  # kmock answers 404 itself
        meta = current.get("metadata", {})
        patch: Any = request.data
        if is_put:
            patch = self._check_put(request, current)
        elif isinstance(patch, Mapping):
            patch = self._scope_merge_patch(request, current, patch)
        else:
            try:
                jsonpatch.apply_patch(current, list(patch), in_place=False)
            except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as exc:
                raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from exc
        new = kmock_dicts.patch_dict(current, patch)
        changes = {"resourceVersion": self._next_revision()}
        if new.get("spec") != current.get("spec"):
            changes["generation"] = int(meta.get("generation", 1)) + 1
        if isinstance(patch, Mapping):
            patch = kmock_dicts.merge_patch_dict(patch, {"metadata": changes})
        else:
            patch = [*patch, *({"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in changes.items())]
        return _rewrite(request, action=kmock.action.UPDATE, data=patch)

    def _check_put(self, request: rendering.Request, current: dict[str, Any]) -> list[dict[str, Any]]:
        """A PUT replaces the object if its resourceVersion is the current one (the apiserver's update)."""
        body = dict(request.data or {})
        sent = body.get("metadata", {}).get("resourceVersion")
        if sent != current.get("metadata", {}).get("resourceVersion"):
            raise _conflict(request)
        kept = {
            k: current["metadata"][k] for k in ("uid", "creationTimestamp", "generation") if k in current["metadata"]
        }
        replacement = {**body, "metadata": {**body.get("metadata", {}), **kept}}
        return [{"op": "replace", "path": "", "value": replacement}]

    def _scope_merge_patch(
        self, request: rendering.Request, current: dict[str, Any], patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        sent = (patch.get("metadata") or {}).get("resourceVersion")
        if sent is not None and sent != current.get("metadata", {}).get("resourceVersion"):
            raise _conflict(request)
        if request.subresource == "status":
            return {"status": patch.get("status")}
        if request.resource == ROLLOUTS:
            return {k: v for k, v in patch.items() if k != "status"}
        return dict(patch)

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def _next_revision(self) -> str:
        return str(next(self._revisions))

    async def _serve_list(self, request: rendering.Request) -> Any:
        result = dict(await super()._serve_list(request))
        info = self.resources.get(request.resource)
        kind = info.kind if info is not None and info.kind else "Object"
        group_version = f"{request.resource.group}/{request.resource.version}".lstrip("/")
        return {
            **result,
            "apiVersion": group_version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(next(self._revisions))},
        }

    # ---- conveniences for assertions --------------------------------------------------------------

    def received(self) -> list[rendering.Request]:
        """Every request served so far, in order."""
        return list(self._requests)

    def rollout(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        key = (ROLLOUTS, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def events(self, namespace: str = "default") -> list[dict[str, Any]]:
        return [
            copy.deepcopy(obj.raw)
            for (resource, ns, _), obj in self.objects.items()
            if resource == EVENTS and ns == namespace and not obj.deleted
        ]


def _rewrite(request: rendering.Request, **changes: Any) -> rendering.Request:
    """Change a parsed request in place: kmock routes requests by identity, so a copy would match nothing."""
    for field, value in changes.items():
        object.__setattr__(request, field, value)
    return request


def _conflict(request: rendering.Request) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=409,
        reason="Conflict",
        message=f"Operation cannot be fulfilled on {request.name}: the object has been modified",
    )


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KubeCluster:
    """A running emulated cluster: its URL, a kubeconfig for ``kubectl``, the emulator for assertions."""

    emulator: StrictKubernetesEmulator
    url: str
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        """Environment for ``kubectl`` and the plugin: only this cluster's kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a LambdaRollout (kubectl apply of a new object) through the API, as a client would."""
        namespace = body.get("metadata", {}).get("namespace", "default")
        return await self._request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", body)

    async def patch_spec(self, name: str, spec: Mapping[str, Any], namespace: str = "default") -> dict[str, Any]:
        return await self._request("PATCH", self._path(name, namespace), {"spec": spec})

    async def merge_patch(self, name: str, body: Mapping[str, Any], namespace: str = "default") -> dict[str, Any]:
        """A merge patch of the whole object (labels and spec at once), as ``kubectl patch --type merge``."""
        return await self._request("PATCH", self._path(name, namespace), body)

    async def delete(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return await self._request("DELETE", self._path(name, namespace), None)

    def _path(self, name: str, namespace: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    async def _request(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        import aiohttp

        headers = {"Content-Type": "application/merge-patch+json" if method == "PATCH" else "application/json"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=json.dumps(body) if body else None, headers=headers) as r,
        ):
            payload: dict[str, Any] = await r.json()
            if r.status >= 400:
                raise AssertionError(f"{method} {path}: {r.status} {payload.get('message')}")
            return payload


def write_kubeconfig(path: Path, url: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester", "namespace": "default"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _declare_resources(emulator: StrictKubernetesEmulator) -> None:
    crd = yaml.safe_load((ROOT / "crds" / "lambdarollout.yaml").read_text())
    names = crd["spec"]["names"]
    emulator.resources[NAMESPACES] = kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs={"list", "watch"})
    emulator.resources[CRDS] = kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs={"list", "watch"}
    )
    emulator.resources[ROLLOUTS] = kmock.ResourceInfo(
        kind=names["kind"],
        singular=names["singular"],
        namespaced=True,
        shortnames=set(names.get("shortNames", [])),
        subresources={"status"},
        verbs={"get", "list", "watch", "create", "patch", "delete"},
    )
    emulator.resources[EVENTS] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create", "list"})
    emulator.resources[LEASES] = kmock.ResourceInfo(kind="Lease", namespaced=True, verbs={"get", "create", "update"})
    emulator.objects[NAMESPACES, None, "default"] = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "default", "uid": str(uuid.uuid4()), "resourceVersion": "0"},
    }
    emulator.objects[CRDS, None, crd["metadata"]["name"]] = crd


@contextlib.asynccontextmanager
async def kube_cluster(tmp_path: Path) -> AsyncIterator[KubeCluster]:
    """An emulated cluster on 127.0.0.1 for the duration of the block."""
    async with StrictKubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        _declare_resources(emulator)
        url = str(server.url).rstrip("/")
        yield KubeCluster(emulator=emulator, url=url, kubeconfig=write_kubeconfig(tmp_path / "kubeconfig", url))


async def eventually(check: Any, *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``check()`` until it returns something truthy; its last result or an AssertionError."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (KeyError, TypeError, IndexError, AssertionError):
            last = None
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.contextmanager
def env_vars(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.asynccontextmanager
async def operator_running(
    cluster: KubeCluster,
    aws_url: str,
    *,
    identity: str = "op-1",
    interval: float = 0.2,
    lease_duration: float = 2.0,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[None]:
    """``lambda-rollouts operator`` in-process (the real command wiring), until the block ends.

    Each operator gets its own thread and event loop, as it would have its own process: kopf's
    shutdown cancels the tasks of its loop, which must not take a second replica (or the emulated
    apiserver) down with it.
    """
    import threading

    import kopf

    from controller.cli import build_parser
    from controller.commands import operator as command

    args = build_parser().parse_args(
        [
            "operator",
            f"--interval={interval}",
            f"--identity={identity}",
            f"--lease-duration={lease_duration}",
            "--lease-namespace=default",
            f"--aws-endpoint-url={aws_url}",
            "--region=us-east-1",
            *extra_args,
        ]
    )

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=cluster.url, insecure=True)

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(command.serve(args, login=login, stop=stop))
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name=f"operator-{identity}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(thread.join, 20)
        assert not thread.is_alive(), f"operator {identity} did not stop"
        assert not failure, f"operator {identity} failed: {failure[0]!r}"


def status_history(cluster: KubeCluster, name: str, namespace: str = "default") -> list[dict[str, Any]]:
    """Every distinct ``.status`` the object went through, in order (kmock keeps each version)."""
    seen: list[dict[str, Any]] = []
    for version in cluster.emulator.objects[ROLLOUTS, namespace, name].history:
        status = dict(version.get("status") or {}) if version is not None else {}
        if status and (not seen or seen[-1] != status):
            seen.append(status)
    return seen
