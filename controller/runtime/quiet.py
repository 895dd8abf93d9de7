"""When a rollout's reconcile can be skipped this tick: its last decision cannot have changed.

Most rollouts a controller looks after are waiting (a pause until ``promote``, a long bake, done),
and for them a reconcile is a task, an observation and a ``decide`` whose answer is "no actions, the
same record": at a thousand rollouts that is most of a quiet tick's CPU. The engine keeps the last
such answer with the inputs that produced it (``Quiet``) and skips the reconcile while none changed.

Why the skip is safe, input by input (``decide`` is pure, so equal inputs give the equal answer):

- the spec: the same object (``Engine.apply`` replaces it only when it changed);
- the record, the owner and managed-marker tags: the function's cached tags equal the copy taken
  when the reconcile started (the record is decoded from them; any write or re-read changes them);
- the shared reads of the tick: no watched alarm in ALARM, no control request for the rollout, no
  metric measurement taken for it;
- what ``observe`` would learn: no alarm-existence check due and none missing, no declared settings
  due, not warming (provisioned configs are polled then), no metric measurement due;
- reads the engine forces: never skipped on a drift check (the alias is read) or at start-up;
- ``now``: the answer is kept only until the instant the core asked to look again
  (``requeue_after``); an answer without one is the same at any later instant (checked over random
  histories in ``tests/unit/test_invariants.py``). An answer with one (a timed pause) may carry a
  countdown in its status message, so it is also refreshed every ``refresh`` seconds: the countdown a
  reader sees is at most that old, while ``step_started_at`` and ``step_allowance`` stay exact.

Only answers that change nothing qualify (``settled``): no actions, no record change, no read asked
for, no event, and not Invalid or Pending (those are retried or waiting for a read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.context import warming
from controller.core.metrics import due_metrics
from controller.core.types import Decision, Phase, Record
from controller.document.model import RolloutSpec

_UNSETTLED_PHASES = frozenset({Phase.INVALID, Phase.PENDING})


@dataclass(frozen=True)
class Quiet:
    """A decision that changed nothing, the inputs it came from, and until when it holds."""

    spec: RolloutSpec
    tags: Mapping[str, str]
    record: Record
    until: float


def settled(decision: Decision) -> bool:
    """The core's answer changes nothing anywhere: deciding again on the same inputs is pointless."""
    return (
        not decision.actions
        and not decision.record_changed
        and not decision.read_alias
        and not decision.read_provisioned
        and not decision.events
        and decision.status.phase not in _UNSETTLED_PHASES
    )


def remember(
    decision: Decision,
    *,
    spec: RolloutSpec,
    tags: Mapping[str, str] | None,
    started: float,
    refresh: float,
) -> Quiet | None:
    """The skip state after a reconcile that began at ``started`` with the function's ``tags``.

    ``started`` is before the core's ``now``, so the instant kept is never later than it asked for.
    """
    if tags is None or not settled(decision):
        return None
    until = float("inf")
    if decision.requeue_after is not None:
        until = started + min(decision.requeue_after, refresh)
    return Quiet(spec=spec, tags=dict(tags), record=decision.record, until=until)


def still_quiet(
    quiet: Quiet | None,
    *,
    spec: RolloutSpec,
    tags: Mapping[str, str] | None,
    now: float,
    requested: bool,
    measured: bool,
    firing: frozenset[str],
    observer_settled: bool,
    time_scale: float,
) -> bool:
    """Whether the remembered decision is still the core's answer (see the module docstring)."""
    if quiet is None or quiet.spec is not spec or now >= quiet.until or tags is None:
        return False
    if requested or measured or not observer_settled or any(name in firing for name in spec.analysis.alarms):
        return False
    if quiet.tags != tags or quiet.record.pending is not None or warming(spec, quiet.record):
        return False
    return not due_metrics(spec, quiet.record, now, time_scale=time_scale)
