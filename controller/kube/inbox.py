"""Kubernetes mode's request inbox: control requests left on the resource's annotation.

``kubectl lambda-rollouts abort NAME`` patches the annotation ``REQUEST_ANNOTATION`` with the user's
own credentials, so RBAC decides who may. The engine reads it through this inbox like any other
request (``controller.runtime.inbox``); once the durable record says the request was handled, the
annotation is removed with a JSON patch that first tests it still holds that very request, so a
newer one patched in meanwhile is never lost. Removing it is a write: the engine makes it only
while it leads, like every other write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from controller.core.codec import decode_request
from controller.core.types import Request
from controller.document.model import RolloutSpec
from controller.kube.api import ApiError, KubeApi
from controller.kube.names import REQUEST_ANNOTATION, annotation_pointer, rollout_path
from controller.kube.source import ResourceSource
from controller.runtime.inbox import MemoryInbox

logger = logging.getLogger("controller.kube.inbox")


class AnnotationInbox(MemoryInbox):
    """Requests from the resources the watch shows, plus those submitted in the process."""

    def __init__(self, api: KubeApi, source: ResourceSource) -> None:
        super().__init__()
        self._api = api
        self._source = source
        self._malformed: set[str] = set()  # annotation values already warned about

    async def _stored(self, specs: Sequence[RolloutSpec]) -> dict[str, Request]:
        found = {}
        for spec in specs:
            resource = self._source.get(spec.key)
            if resource is None or not resource.request:
                continue
            request = decode_request(resource.request)
            if request is not None:
                found[spec.key] = request
            elif resource.request not in self._malformed:
                self._malformed.add(resource.request)
                logger.warning("%s: ignoring a malformed request annotation %r", spec.key, resource.request)
        return found

    async def _remove(self, spec: RolloutSpec, request: Request, *, priority: bool) -> None:
        resource = self._source.get(spec.key)
        if resource is None or not resource.request or request.id not in resource.request.split():
            return
        pointer = annotation_pointer(REQUEST_ANNOTATION)
        try:
            await self._api.json_patch(
                rollout_path(resource.namespace, resource.name),
                [{"op": "test", "path": pointer, "value": resource.request}, {"op": "remove", "path": pointer}],
            )
        except ApiError as exc:
            if exc.status not in (404, 409, 422):
                raise
            # Gone, or replaced by a newer request meanwhile: nothing of ours to remove.


__all__ = ["AnnotationInbox"]
