"""Where the engine reports what it sees: the ``StatusSink`` seam.

The engine knows nothing about Prometheus, Kubernetes ``.status`` or terminals; it calls every
registered sink when a rollout's status changes, on every transition ``Event``, and when a rollout
stops being managed. Metrics exporters and Kubernetes status writers implement this protocol, so
adding an output never touches the reconcile loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.types import Event, Status
from controller.observability.logs import rollout_logger
from controller.spec.model import RolloutSpec


class StatusSink(Protocol):
    """An output of the engine. Methods must be quick: they run on the reconcile path."""

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None: ...

    async def event(self, *, spec: RolloutSpec, event: Event) -> None: ...

    async def removed(self, *, spec: RolloutSpec) -> None: ...


@dataclass
class MemorySink:
    """Keeps the latest status and every event per rollout: ``run --once`` and tests read them back."""

    statuses: dict[str, Status] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        self.statuses[spec.key] = status

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        self.events.setdefault(spec.key, []).append(event)

    async def removed(self, *, spec: RolloutSpec) -> None:
        self.statuses.pop(spec.key, None)


class LogSink:
    """Turns status changes and transitions into log lines carrying the rollout's identity."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("controller.rollout")

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        log = rollout_logger(self._logger, spec, phase=status.phase)
        level = logging.WARNING if status.errors else logging.INFO
        log.log(
            level,
            "stable=%s canary=%s weight=%d%% step=%d/%d %s",
            status.stable_version,
            status.canary_version,
            status.canary_weight,
            status.current_step,
            status.steps,
            "; ".join(status.errors) or status.message,
        )

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        level = logging.WARNING if event.warning else logging.INFO
        rollout_logger(self._logger, spec).log(level, "%s: %s", event.reason, event.message)

    async def removed(self, *, spec: RolloutSpec) -> None:
        rollout_logger(self._logger, spec).info("no longer managed (document gone); the alias is left as it is")


class FanoutSink:
    """Several sinks behind one: a failing output is logged and never breaks the reconcile."""

    def __init__(self, sinks: Iterable[StatusSink]) -> None:
        self._sinks = list(sinks)
        self._logger = logging.getLogger("controller.runtime.sink")

    def add(self, sink: StatusSink) -> None:
        self._sinks.append(sink)

    async def status_changed(self, *, spec: RolloutSpec, status: Status, previous: Status | None) -> None:
        for sink in self._sinks:
            try:
                await sink.status_changed(spec=spec, status=status, previous=previous)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def event(self, *, spec: RolloutSpec, event: Event) -> None:
        for sink in self._sinks:
            try:
                await sink.event(spec=spec, event=event)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)

    async def removed(self, *, spec: RolloutSpec) -> None:
        for sink in self._sinks:
            try:
                await sink.removed(spec=spec)
            except Exception:
                rollout_logger(self._logger, spec).exception("status sink %r failed", sink)
