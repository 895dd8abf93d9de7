"""The engine's bookkeeping per rollout; the durable state is on the function, not here.

One ``Rollout`` per managed rollout, shared by the parts the engine is made of: the scheduler's
timing (backoff, wake-up, drift checks, the reconcile in flight), the reporter's memory (last
status and event, when an alarm was first seen), and the quiet skip's last answer. An ``Orphan`` is
a rollout that stopped being managed mid-rollout and stays visible until its document is back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.types import Event, Record, Status
from controller.document.model import RolloutSpec
from controller.observability.logs import RolloutLogger
from controller.runtime.quiet import Quiet


@dataclass
class Rollout:
    """One managed rollout as the engine's parts see it."""

    spec: RolloutSpec
    log: RolloutLogger
    held: tuple[str, ...] = ()
    # ---- the reporter's ----
    status: Status | None = None
    # The last event passed on to the sinks (repeats of it are dropped).
    last_event: Event | None = None
    # When the controller first knew one of the watched alarms was in ALARM (None while none is), from
    # what (a tick's read: "poll", a pushed event: "event"), and whether the write restoring stable
    # after it was already reported (once per firing).
    alarm_seen_at: float | None = None
    alarm_seen_by: str = "poll"
    reaction_reported: bool = False
    # ---- the scheduler's ----
    failures: int = 0
    retry_at: float = 0.0
    wake_at: float | None = None
    # None until the aliases were read once (start-up); then when the next drift check is due.
    drift_at: float | None = None
    # The reconcile in flight was started to roll back now: it is never overtaken by another.
    urgent: bool = False
    # ---- the quiet skip's ----
    # The last answer that changed nothing, with its inputs: while they hold, no reconcile is needed.
    quiet: Quiet | None = field(default=None, repr=False)


@dataclass
class Orphan:
    """A rollout whose document went away while its new version had traffic: loud until it is back.

    ``persisted`` is False until the record saying Orphaned is on the function (a tag write that
    is retried every tick, like any other write).
    """

    spec: RolloutSpec
    record: Record
    persisted: bool = False


__all__ = ["Orphan", "Rollout"]
