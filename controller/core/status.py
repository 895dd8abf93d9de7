"""From a durable record to what people read: the step numbering and the status every surface shows.

One convention everywhere (``get``, ``get --watch``, ``kubectl get lro``, ``plan``, logs, metrics and
the messages themselves): steps are counted from 1, "step 2 of 4" is the step under way, and the
final move to 100% is a step of its own, so a plan of ``setWeight 10, pause 5m`` has 3 steps and a
finished rollout shows 3/3 (the dashboard's "step progress" reaches 100%). A rollout with nothing in
flight that did not finish (rolled back, aborted) is at step 0.

``record_status`` is what a reader without the document makes of a record (``get``, the watch):
the same fields the core's own decisions show, minus what only ``decide`` knows (live countdowns,
warm-up progress).
"""

from __future__ import annotations

from controller.core.types import Phase, Record, Status


def plan_steps(plan_length: int) -> int:
    """Steps of a weight plan as people count them: its steps plus the final move to 100%."""
    return plan_length + 1


def step_number(record: Record, steps: int) -> int:
    """The step under way, from 1; ``steps`` when finished, 0 with nothing in flight.

    ``record.step_index`` is the plan index of the step being worked on, except while an alias
    write is pending: the index has already moved past the write, which is still the step under way.
    ``steps`` 0 means the plan is unknown (a reader without the document): the number is not capped.
    """
    if record.canary is None:
        return steps if record.phase is Phase.HEALTHY else 0
    if record.weight >= 100:
        return steps or record.step_index + 1  # the final write, or waiting for afterAllowTraffic
    number = record.step_index if record.pending is not None else record.step_index + 1
    number = max(number, 1)
    return min(number, steps) if steps else number


def record_status(record: Record | None, *, steps: int | None = None, message: str = "") -> Status:
    """The status as the record has it (what the controller last persisted).

    ``steps`` comes from the document when the reader has it, else from the record (0: unknown).
    """
    record = record or Record(message=message)
    total = steps if steps is not None else record.steps
    return Status(
        phase=record.phase,
        stable_version=record.stable,
        canary_version=record.canary,
        canary_weight=record.weight if record.canary is not None else 0,
        current_step=step_number(record, total),
        steps=total,
        step_started_at=record.step_started_at,
        message=record.message,
        reason=record.reason,
        history=record.history,
    )


__all__ = ["plan_steps", "record_status", "step_number"]
