"""From a durable record to what people read: the step numbering and the status every surface shows.

One convention everywhere (``get``, ``get --watch``, ``kubectl get lro``, ``plan``, logs, metrics and
the messages themselves): steps are counted from 1, "step 2 of 4" is the step under way, and the
final move to 100% is a step of its own, so a plan of ``setWeight 10, pause 5m`` has 3 steps and a
finished rollout shows 3/3 (the dashboard's "step progress" reaches 100%). A rollout with nothing in
flight that did not finish (rolled back, aborted) is at step 0.

``record_status`` is what a reader without the document makes of a record (``get``, the watch):
the same fields the core's own decisions show, minus what only ``decide`` knows (live countdowns,
warm-up progress). The sequential tests' evidence is judged from the record alone (it keeps each
test's settings), so every surface shows the same e-values against the same bound, and while a test
runs the status message ends with it (``evidence_text``).
"""

from __future__ import annotations

from controller.core.sequential import rate_text, verdict
from controller.core.types import Phase, Record, SequentialEvidence, Status


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


def evidence_of(record: Record) -> tuple[SequentialEvidence, ...]:
    """Each sequential test of the attempt in flight, judged as the core judges it (none otherwise)."""
    if record.canary is None:
        return ()
    found = []
    for run in record.sequential:
        state = run.state
        judged = verdict(state, settings=run.settings, since=record.weight_at)
        found.append(
            SequentialEvidence(
                test=state.name,
                canary_failures=state.canary_failures,
                canary_requests=state.canary_requests,
                stable_failures=state.stable_failures,
                stable_requests=state.stable_requests,
                regression=judged.evidence.regression,
                no_regression=judged.evidence.no_regression,
                bound=judged.threshold,
                conclusion=str(judged.conclusion),
                looks=state.looks,
            )
        )
    return tuple(found)


def evidence_fields(evidence: SequentialEvidence) -> dict[str, object]:
    """One test's evidence as ``.status.evidence`` and ``get -o json`` show it: counts, and log10 e-values
    against the bound, to three decimals (a status that changes only with a look)."""
    return {
        "test": evidence.test,
        "canary": {"failures": evidence.canary_failures, "requests": evidence.canary_requests},
        "stable": {"failures": evidence.stable_failures, "requests": evidence.stable_requests},
        "looks": evidence.looks,
        "regression": round(evidence.regression, 3),
        "noRegression": round(evidence.no_regression, 3),
        "bound": round(evidence.bound, 3),
        "conclusion": evidence.conclusion,
    }


def _power(log10: float) -> str:
    return f"10^{log10:.1f}".replace(".0", "") if abs(log10) >= 0.05 else "10^0"


def evidence_line(evidence: SequentialEvidence) -> str:
    """``sequential errors: canary 1.2% (12/1000) vs stable 1.0% (50/5000), e-values 10^0.3 / 10^1.1 of 10^2``:
    the regression and no-regression e-values against the bound that proves either."""
    canary = rate_text(evidence.canary_failures, evidence.canary_requests)
    stable = rate_text(evidence.stable_failures, evidence.stable_requests)
    values = f"{_power(evidence.regression)} / {_power(evidence.no_regression)} of {_power(evidence.bound)}"
    return f"sequential {evidence.test}: canary {canary} vs stable {stable}, e-values {values}"


def evidence_text(evidence: tuple[SequentialEvidence, ...]) -> str:
    return "; ".join(evidence_line(e) for e in evidence)


def with_evidence(message: str, evidence: tuple[SequentialEvidence, ...]) -> str:
    """``message`` followed by the evidence of the tests running, if any."""
    text = evidence_text(evidence)
    return "; ".join(part for part in (message, text) if part)


def record_status(record: Record | None, *, steps: int | None = None, message: str = "") -> Status:
    """The status as the record has it (what the controller last persisted).

    ``steps`` comes from the document when the reader has it, else from the record (0: unknown).
    """
    record = record or Record(message=message)
    total = steps if steps is not None else record.steps
    evidence = evidence_of(record)
    return Status(
        phase=record.phase,
        stable_version=record.stable,
        canary_version=record.canary,
        canary_weight=record.weight if record.canary is not None else 0,
        current_step=step_number(record, total),
        steps=total,
        step_started_at=record.step_started_at,
        message=with_evidence(record.message, evidence),
        reason=record.reason,
        history=record.history,
        evidence=evidence,
    )


__all__ = [
    "evidence_fields",
    "evidence_line",
    "evidence_of",
    "evidence_text",
    "plan_steps",
    "record_status",
    "step_number",
    "with_evidence",
]
