"""When a rollout's reconcile can be skipped this tick: its last decision cannot have changed.

Most rollouts a controller looks after are waiting (a pause until ``promote``, a long bake, done),
and for them a reconcile is a task, an observation and a ``decide`` whose answer is "no actions, the
same record": at a thousand rollouts that is most of a quiet tick's CPU. The engine keeps the last
such answer with the inputs that produced it (``Quiet``) and skips the reconcile while they hold.

Why the skip is safe: ``decide`` is pure, so equal inputs give the equal answer. Its inputs are

- everything the tick knows before the rollout's own reads, as ONE value: ``Inputs`` (the spec, the
  function's tags, which the record, the owner tag and the managed marker come from, the pending
  request, the tick's evidence: alarms firing, missing alarms, measurements, hook answers and hooks
  running). The skip compares it whole, so an input added to it is compared too; an input that
  reached ``decide`` any other way would have to be a read of the rollout's own;
- the rollout's own reads: the alias (never skipped when it is read: start-up, a drift check), the
  declared settings (read when due: never skipped then), the provisioned configs (polled while
  warming: never skipped then), published versions (immutable, cached), and metric measurements
  and sequential periods that are due but not in yet (never skipped then: the core may be waiting
  on them, and a period must never go unread);
- ``now``: the answer is kept only until the instant the core asked to look again
  (``requeue_after``, which includes the end of a pause and the progress deadline); an answer
  without one is the same at any later instant (checked over random histories in
  ``tests/unit/test_invariants.py`` and ``tests/unit/test_quiet.py``). An answer with one may carry a
  countdown in its status message, so it is also refreshed every ``refresh`` seconds: the countdown
  a reader sees is at most that old, while ``step_started_at`` and ``step_allowance`` stay exact.

Only answers that change nothing qualify (``settled``): no actions, no record change, no read asked
for, no event, and not Invalid or Pending (those are retried or waiting for a read).
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.context import warming
from controller.core.metric_analysis import due_metrics
from controller.core.sequential_analysis import due_tests
from controller.core.types import Decision, Phase, Record
from controller.runtime.reads import Inputs

_UNSETTLED_PHASES = frozenset({Phase.INVALID, Phase.PENDING})


@dataclass(frozen=True)
class Quiet:
    """A decision that changed nothing, the inputs it came from, and until when it holds."""

    inputs: Inputs
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


def remember(decision: Decision, *, inputs: Inputs, started: float, refresh: float) -> Quiet | None:
    """The skip state after a reconcile that began at ``started`` on ``inputs``.

    ``started`` is before the core's ``now``, so the instant kept is never later than it asked for.
    """
    if inputs.tags is None or not settled(decision):
        return None
    until = float("inf")
    if decision.requeue_after is not None:
        until = started + min(decision.requeue_after, refresh)
    return Quiet(inputs=inputs, record=decision.record, until=until)


def still_quiet(quiet: Quiet | None, inputs: Inputs, *, now: float, settings_due: bool, time_scale: float) -> bool:
    """Whether the remembered decision is still the core's answer (see the module docstring)."""
    if quiet is None or now >= quiet.until or settings_due:
        return False
    if quiet.inputs != inputs or quiet.record.pending is not None or warming(inputs.spec, quiet.record):
        return False
    spec, record = inputs.spec, quiet.record
    return not due_metrics(spec, record, now, time_scale=time_scale) and not due_tests(
        spec, record, now, time_scale=time_scale
    )


__all__ = ["Quiet", "remember", "settled", "still_quiet"]
