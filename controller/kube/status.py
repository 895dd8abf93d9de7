"""The engine's statuses and transitions, written to Kubernetes: ``.status`` patches and Events.

``KubeStatusWriter`` is an engine ``StatusSink``: each status change becomes a merge patch of the
``/status`` subresource (phase, versions, weight, step, conditions, observedGeneration, history, the
sequential tests' evidence),
each transition an Event. Only the leader writes (``is_leader``), so "only one replica writes"
holds for Kubernetes exactly as for AWS.

The engine reports a status once, when it changes. A patch the apiserver did not take (a 5xx, a
dropped connection) is therefore kept, the latest one per rollout, and made again by
``retry_unwritten`` on the leader's next housekeeping tick: otherwise ``.status`` would stay wrong
until the rollout's next change, which for a finished rollout never comes. Events are not retried:
they report a moment, and the status says where the rollout stands.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.core.status import evidence_fields
from controller.core.types import Event, HistoryEntry, Phase, Status, Warmup
from controller.document.model import RolloutSpec
from controller.kube.api import ApiError, KubeApi
from controller.kube.names import COMPONENT, rollout_path
from controller.kube.source import Resource, ResourceSource
from controller.runtime.sink import AliasWritten, Reconciled

logger = logging.getLogger("controller.kube")

ACTIVE = frozenset({Phase.PENDING, Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})
FAILED = frozenset({Phase.DEGRADED, Phase.ROLLED_BACK, Phase.INVALID, Phase.ORPHANED})


def rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_for(status: Status, *, previous: Sequence[Mapping[str, Any]] = (), now: float) -> list[dict[str, Any]]:
    """Ready / Progressing / Degraded from the phase; a condition keeps its time until it flips."""
    before = {c.get("type"): c for c in previous}
    wanted = {
        "Ready": status.phase is Phase.HEALTHY,
        "Progressing": status.phase in ACTIVE,
        "Degraded": status.phase in FAILED,
    }
    conditions = []
    for kind, true in wanted.items():
        value = "True" if true else "False"
        old = before.get(kind) or {}
        since = old.get("lastTransitionTime") if old.get("status") == value else None
        conditions.append(
            {
                "type": kind,
                "status": value,
                "reason": status.reason or str(status.phase),
                "message": status.message,
                "lastTransitionTime": since or rfc3339(now),
            }
        )
    return conditions


def history_entry(entry: HistoryEntry) -> dict[str, Any]:
    at = rfc3339(entry.at)
    body = {"version": entry.version, "outcome": entry.outcome, "reason": entry.reason, "at": at, "by": entry.by}
    if entry.detail:
        body["detail"] = entry.detail
    return body


def status_body(
    status: Status, *, generation: int, previous: Mapping[str, Any] | None = None, now: float
) -> dict[str, Any]:
    """The resource's ``.status`` for a core ``Status`` (a merge patch: None removes a field)."""
    return {
        "phase": str(status.phase),
        "stableVersion": status.stable_version,
        "canaryVersion": status.canary_version,
        "canaryWeight": status.canary_weight,
        "currentStep": status.current_step,
        "steps": status.steps,
        "stepStartedAt": rfc3339(status.step_started_at),
        "warmup": warmup_body(status.warmup),
        "message": status.message,
        "reason": status.reason,
        "errors": list(status.errors),
        "observedGeneration": generation,
        "conditions": conditions_for(status, previous=(previous or {}).get("conditions") or (), now=now),
        "history": [history_entry(entry) for entry in status.history],
        "evidence": [evidence_fields(evidence) for evidence in status.evidence],
    }


def warmup_body(warmup: Warmup | None) -> dict[str, Any] | None:
    """``.status.warmup`` while the new version's provisioned concurrency warms (None removes it)."""
    if warmup is None:
        return None
    return {
        "version": warmup.version,
        "allocated": warmup.allocated,
        "requested": warmup.requested,
        "status": warmup.status,
    }


class KubeStatusWriter:
    """Mirrors the engine's statuses into ``.status`` and its transitions into Events; leader only."""

    def __init__(
        self,
        api: KubeApi,
        source: ResourceSource,
        *,
        is_leader: Callable[[], bool],
        identity: str,
        clock: Callable[[], float],
    ) -> None:
        self._api = api
        self._source = source
        self._is_leader = is_leader
        self._identity = identity
        self._clock = clock
        # The body last written per rollout, with the uid of the resource it went to: a resource
        # deleted and created again (same key, new uid) starts from its own, empty status.
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        # The latest status per rollout that the apiserver did not take, with its generation.
        self._unwritten: dict[str, tuple[Status, int]] = {}

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        resource = self._source.get(spec.key)
        if resource is not None:
            await self.write(resource, status, generation=spec.generation)

    async def write(self, resource: Resource, status: Status, *, generation: int) -> None:
        """Patch ``.status`` unless it already says the same (re-sent after a leadership change).

        ``generation`` is the one the status was computed from: ``observedGeneration`` tells a user
        whether the controller has seen their last edit yet.
        """
        if not self._is_leader():
            return
        uid, written = self._written.get(resource.key, ("", {}))
        previous = written if uid == resource.uid and written else resource.status
        body = status_body(status, generation=generation, previous=previous, now=self._clock())
        if _same_status(previous, body):
            self._unwritten.pop(resource.key, None)
            return
        try:
            await self._api.merge_patch(rollout_path(resource.namespace, resource.name, "status"), {"status": body})
        except ApiError as exc:
            if exc.status == 404:  # gone meanwhile: nothing to report on
                self._unwritten.pop(resource.key, None)
                return
            self._unwritten[resource.key] = (status, generation)
            raise
        except (OSError, TimeoutError):
            self._unwritten[resource.key] = (status, generation)
            raise
        self._unwritten.pop(resource.key, None)
        self._written[resource.key] = (resource.uid, body)

    async def retry_unwritten(self) -> None:
        """Make again the status patches the apiserver did not take (leader only, each tick)."""
        for key, (status, generation) in list(self._unwritten.items()):
            resource = self._source.get(key)
            if resource is None:
                self._unwritten.pop(key, None)
                continue
            try:
                await self.write(resource, status, generation=generation)
            except (ApiError, OSError, TimeoutError) as exc:
                logger.warning("%s: status not written yet (retried at the next tick): %s", key, exc)

    def forget_unwritten(self) -> None:
        """Leadership lost: the next term's engine reports every status afresh."""
        self._unwritten.clear()

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        resource = self._source.get(spec.key)
        if resource is None or not self._is_leader():
            return
        await self.post_event(resource, event)

    async def post_event(self, resource: Resource, event: Event) -> None:
        now = rfc3339(self._clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{resource.name}.", "namespace": resource.namespace},
            "involvedObject": resource.involved_object(),
            "reason": event.reason[:128],
            "message": event.message[:1024],
            "type": "Warning" if event.warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._api.post(f"/api/v1/namespaces/{resource.namespace}/events", body)

    async def reconciled(self, *, spec: RolloutSpec, report: Reconciled) -> None:
        return  # not part of .status: metrics report it

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        return  # the status change that follows says it

    async def removed(self, *, spec: RolloutSpec) -> None:
        # The resource is gone; its alias is left as it is. Nothing to write.
        self._written.pop(spec.key, None)
        self._unwritten.pop(spec.key, None)


def _same_status(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal apart from condition timestamps (which only move when a condition flips)."""

    def strip(status: Mapping[str, Any]) -> dict[str, Any]:
        conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or ()]
        return {**{k: v for k, v in status.items() if v is not None}, "conditions": conditions}

    return strip(old) == strip(new)
