"""The LambdaRollouts the watch shows, as the engine's ``DesiredState``.

kopf hands every watch event to ``ResourceSource.seen`` / ``gone`` (``controller.kube.wiring``); the
source parses each resource's spec with the loader every document goes through
(``controller.document.loader.parse_rollout``), keeps the last valid spec of a resource that became
invalid, and builds the state with ``controller.runtime.desired.desired_state``, the function the
GitOps source uses too: an invalid resource is held (never valid: under a stand-in, so it is still
reported Invalid), two resources on one function alias are both held, naming each other.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.document.loader import Placement, parse_rollout, written_placement
from controller.document.model import RolloutSpec
from controller.kube.names import API_VERSION, KIND, REQUEST_ANNOTATION
from controller.runtime.desired import DesiredState, Entry, desired_state


@dataclass
class Resource:
    """What the watch last showed of one LambdaRollout."""

    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    spec: RolloutSpec | None = None  # the last valid spec (kept while the document is invalid)
    errors: tuple[str, ...] = ()
    # ``spec.functionName`` and ``spec.alias`` as written, even when the document is invalid.
    function_name: str = ""
    alias: str = ""
    revert_on_deletion: bool = False
    deleting: bool = False
    finalizers: tuple[str, ...] = ()
    request: str | None = None
    status: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def involved_object(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


class ResourceSource:
    """The LambdaRollouts seen by the watch, as ``DesiredState`` updates for the engine."""

    def __init__(self, *, placement: Placement = written_placement) -> None:
        """``placement``: where each rollout's function lives (one alias name in two accounts is no duplicate)."""
        self.placement = placement
        self._resources: dict[str, Resource] = {}
        self._changed = asyncio.Event()
        self.loaded = False  # set once kopf runs and the resources can be listed (``wiring``)

    def get(self, key: str) -> Resource | None:
        return self._resources.get(key)

    def resources(self) -> list[Resource]:
        return list(self._resources.values())

    def seen(self, body: Mapping[str, Any]) -> Resource:
        """Take in an object from the watch: parse its spec, keep the last valid one."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "default", meta["name"]
        key = f"{namespace}/{name}"
        previous = self._resources.get(key)
        spec, errors = parse_rollout(dict(body), default_namespace=namespace)
        if spec is not None:
            spec = dataclasses.replace(spec, generation=int(meta.get("generation") or 0))
        kept = spec if spec is not None else (previous.spec if previous and previous.uid == meta.get("uid") else None)
        written: Mapping[str, Any] = body["spec"] if isinstance(body.get("spec"), Mapping) else {}
        resource = Resource(
            namespace=namespace,
            name=name,
            uid=meta.get("uid") or "",
            generation=int(meta.get("generation") or 0),
            spec=kept,
            errors=tuple(f"{e.path}: {e.message}" if e.path else e.message for e in errors),
            function_name=_text(written.get("functionName")),
            alias=_text(written.get("alias")),
            revert_on_deletion=bool((body.get("spec") or {}).get("revertOnDeletion")),
            deleting=bool(meta.get("deletionTimestamp")),
            finalizers=tuple(meta.get("finalizers") or ()),
            request=(meta.get("annotations") or {}).get(REQUEST_ANNOTATION),
            status=dict(body.get("status") or {}),
        )
        self._resources[key] = resource
        if previous is None or (previous.spec, previous.errors) != (resource.spec, resource.errors):
            self._changed.set()
        return resource

    def gone(self, namespace: str, name: str) -> None:
        if self._resources.pop(f"{namespace}/{name}", None) is not None:
            self._changed.set()

    def desired(self) -> DesiredState:
        """Every resource, valid or not, through the function the GitOps source uses too."""
        return desired_state(
            (Entry(r.key, r.spec, r.errors, r.function_name, r.alias, origin=r.key) for r in self._resources.values()),
            placement=self.placement,
        )

    async def updates(self) -> AsyncIterator[DesiredState]:
        """The current state at once, then one after each change (changes in between coalesce)."""
        while True:
            self._changed.clear()
            yield self.desired()
            await self._changed.wait()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
