"""One-click gates: a notification's signed ``promote`` / ``abort`` link, turned into a control request.

The HTTP side (a confirmation page on GET, the action on POST, tokens verified and used once per
process) is ``controller.notify.links.gate_routes``; this is what it submits to. It works on whichever
replica the click lands on, leader or not, because it does what ``lambda-rollouts promote`` does: it
leaves the request where the leader reads requests (the function's request tag in GitOps mode, the
resource's annotation in Kubernetes mode), and the core handles the request's id once.

A link acts once and only where it was meant to: the durable record must still be on the attempt the
link was issued for, and a promote link only while the rollout waits at the step it was issued at (a
link for the pause at step 2 does nothing at step 4). Both are checked against the record, read with
the one ``GetResources`` scan ``get`` uses.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from controller.aws import AwsClients
from controller.commands.rollouts import ManagedRollout, managed_rollouts
from controller.core.announce import attempt_id
from controller.core.codec import CodecError, encode_request, request_key
from controller.core.status import record_status
from controller.core.types import Request, Verb
from controller.kube.api import KubeApi
from controller.kube.names import REQUEST_ANNOTATION, rollout_path
from controller.notify.links import SubmitResult

#: Leaves ``request`` where the leader reads requests for ``rollout``.
StoreRequest = Callable[[ManagedRollout, Request], Awaitable[None]]


def annotation_store(api: KubeApi) -> StoreRequest:
    """Kubernetes mode: the resource's request annotation, as ``kubectl lambda-rollouts promote NAME`` writes it."""

    async def store(rollout: ManagedRollout, request: Request) -> None:
        namespace, _, name = rollout.key.partition("/")
        annotations = {REQUEST_ANNOTATION: encode_request(request)}
        await api.merge_patch(rollout_path(namespace, name), {"metadata": {"annotations": annotations}})

    return store


def tag_store(aws: AwsClients) -> StoreRequest:
    """GitOps mode: the function's request tag, as ``lambda-rollouts promote NAME`` writes it."""

    async def store(rollout: ManagedRollout, request: Request) -> None:
        await aws.lambda_.tag(rollout.arn, {request_key(rollout.alias): encode_request(request)})

    return store


class GateDesk:
    """The ``submit`` of ``gate_routes``: checks a link against the durable record and stores the request."""

    def __init__(self, aws: AwsClients, store: StoreRequest, *, clock: Callable[[], float] = time.time) -> None:
        self._aws = aws
        self._store = store
        self._clock = clock

    async def __call__(
        self, *, rollout_key: str, verb: Verb, request_id: str, by: str, attempt: str, step: int
    ) -> SubmitResult:
        found = [r for r in await managed_rollouts(self._aws) if r.key == rollout_key]
        if len(found) != 1:
            return SubmitResult(False, f"{rollout_key} has no durable record (is it managed?)")
        rollout = found[0]
        try:
            record = rollout.record()
        except CodecError:
            return SubmitResult(False, f"{rollout_key}: its durable record cannot be read")
        current = attempt_id(version=record.canary, started_at=record.started_at) if record is not None else ""
        if record is None or record.canary is None or current != attempt:
            return SubmitResult(False, f"{rollout_key} is not on attempt {attempt} any more: this link has expired")
        at = record_status(record).current_step
        if verb is Verb.PROMOTE and at != step:
            return SubmitResult(False, f"{rollout_key} is not waiting at step {step} any more (now at step {at})")
        await self._store(rollout, Request(id=request_id, verb=verb, at=self._clock(), by=by))
        return SubmitResult(True)


__all__ = ["GateDesk", "StoreRequest", "annotation_store", "tag_store"]
