"""The engine's request inbox: where control requests (``promote``, ``abort`` ...) wait to be handled.

The core handles a request once (its id goes into the durable record whether or not it applied), so
an inbox only has to do two things: say which request waits for each rollout this tick (``pending``)
and forget one once the record saying it was handled is durable (``handled``), never before, so that
a request survives a crash or a leadership change. Where requests come from is the inbox's business:

- ``TagInbox`` (GitOps mode): a request tag on the function, left by ``lambda-rollouts abort NAME``
  (IAM decides who may); read with one ``GetResources`` per distinct alias name per tick;
- ``controller.kube.inbox.AnnotationInbox`` (Kubernetes mode): an annotation on the resource, left
  by ``kubectl lambda-rollouts abort NAME`` (RBAC decides who may).

Both also take requests made inside the process (``submit``): ``revertOnDeletion``'s abort, a one-click
link from a notification. Such a request lives in memory only, until it is handled; when a stored
request and a submitted one wait for the same rollout, the newer wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from controller.core.types import Request
from controller.document.model import RolloutSpec
from controller.document.names import function_name_of
from controller.runtime.records import RecordStore


class Inbox(Protocol):
    async def pending(self, specs: Sequence[RolloutSpec]) -> dict[str, Request]:
        """Rollout key -> the request waiting for it (at most one each)."""
        ...

    async def handled(self, spec: RolloutSpec, request: Request, *, priority: bool = False) -> None:
        """The durable record says ``request`` was handled: it is not offered again."""
        ...

    def submit(self, key: str, request: Request) -> None:
        """A request made inside the process, for rollout ``key``."""
        ...


class MemoryInbox:
    """Requests submitted inside the process; the base of the inboxes that also read stored ones."""

    def __init__(self) -> None:
        self._submitted: dict[str, Request] = {}

    def submit(self, key: str, request: Request) -> None:
        waiting = self._submitted.get(key)
        if waiting is None or waiting.at <= request.at:
            self._submitted[key] = request

    async def pending(self, specs: Sequence[RolloutSpec]) -> dict[str, Request]:
        stored = await self._stored(specs)
        wanted = {spec.key for spec in specs}
        for key, request in self._submitted.items():
            if key in wanted and (key not in stored or stored[key].at <= request.at):
                stored[key] = request
        return stored

    async def handled(self, spec: RolloutSpec, request: Request, *, priority: bool = False) -> None:
        if self._submitted.get(spec.key) == request:
            del self._submitted[spec.key]
            return
        await self._remove(spec, request, priority=priority)

    async def _stored(self, specs: Sequence[RolloutSpec]) -> dict[str, Request]:
        return {}

    async def _remove(self, spec: RolloutSpec, request: Request, *, priority: bool) -> None:
        return


class TagInbox(MemoryInbox):
    """GitOps mode: a request tag on the function (``lambda-rollouts/request.<alias>``)."""

    def __init__(self, store: RecordStore) -> None:
        super().__init__()
        self._store = store

    async def _stored(self, specs: Sequence[RolloutSpec]) -> dict[str, Request]:
        if not specs:
            return {}
        tagged: Mapping[tuple[str, str], Request] = await self._store.requests(spec.alias for spec in specs)
        found = {}
        for spec in specs:
            request = tagged.get((function_name_of(spec.function_name), spec.alias))
            if request is not None:
                found[spec.key] = request
        return found

    async def _remove(self, spec: RolloutSpec, request: Request, *, priority: bool) -> None:
        fn = self._store.known(spec.function_name)
        if fn is not None:
            await self._store.clear_request(fn, alias=spec.alias, request_id=request.id, priority=priority)


__all__ = ["Inbox", "MemoryInbox", "TagInbox"]
