"""Sequential analysis in the core: which periods a test reads, what its looks mean, and what the rollout
does about them.

``spec.analysis.sequential`` compares the canary's failure rate with stable's on every period while the
new version has traffic; ``controller.core.sequential`` holds the statistics (anytime-valid: the
controller may look every period and stop the moment the evidence suffices). The core never reads
CloudWatch: it says which periods of which test are due (``due_tests``, a pure function the shell calls
before its one batched ``GetMetricData`` per tick), the shell hands the counts back in ``Observed.looks``,
and the rules here fold them into the durable record and act on them:

- **Which periods**: whole periods of the test's (scaled) ``period``, aligned as CloudWatch aligns its
  datapoints, that begin at or after the current weight was confirmed (``record.weight_at``), so no
  look mixes in traffic of another weight, and after the last period folded (the state's ``through``).
  A period is due ``publicationDelay`` after it ends, once CloudWatch has published all of it. At most
  ``MAX_LOOKS`` are read at once: a controller that was down catches up over a few ticks.
- **Folded once**: each period is folded into its test's state exactly once, for the version in flight
  against the stable one and under the settings it was read for (the looks carry the test's
  fingerprint); the state lives in the record (``Record.sequential``), so a crash loses no evidence and
  never restarts a test. It belongs to the attempt: cleared when it starts or ends; a test whose
  declaration changed (another fingerprint) starts again, the others keep their evidence.
- **Regression proven**: rolled back at once, like a failed metric: phase RolledBack, reason
  ``RegressionDetected``, the message gives both rates, the counts and the bound
  (``controller.core.sequential.summary``), the version is marked failed.
- **No regression proven** by every test at the current weight (with a period of canary traffic that
  began after the weight was applied), with ``promoteEarly``: the current timed pause ends now
  (``proven_no_regression``, asked by ``advance``); an indefinite pause is never ended early.
- Otherwise the rollout goes on as planned: no data, too few requests or no conclusion is never a pass,
  and a sequential test never holds a step (metrics and alarms do that).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime

from controller.core.context import Ctx, canary_in_flight, withdraw_decision
from controller.core.metric_analysis import cloudwatch_period
from controller.core.reasons import Outcome, Reason
from controller.core.sequential import Conclusion, SequentialSettings, SequentialState, fold, summary, verdict
from controller.core.types import Decision, Phase, Record, SequentialLooks, SequentialRun
from controller.document.model import RolloutSpec, SequentialTest

#: At most this many periods of one test are read and folded in one tick.
MAX_LOOKS = 100
FINGERPRINT_LENGTH = 8
# A period counts as ended when the clock is this close to its end: float sums of scaled times.
_EPSILON = 1e-6


@functools.lru_cache(maxsize=4096)
def fingerprint(test: SequentialTest) -> str:
    """A short, stable digest of everything the test's evidence depends on (its whole declaration)."""
    text = json.dumps(dataclasses.asdict(test), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


@functools.lru_cache(maxsize=4096)
def settings_of(test: SequentialTest) -> SequentialSettings:
    return SequentialSettings(
        max_increase=test.max_increase, confidence=test.confidence, negligible_rate=test.negligible_rate
    )


def testing(spec: RolloutSpec, record: Record) -> bool:
    """The new version has traffic from a weight plan and nothing is in flight: periods are read."""
    return bool(spec.analysis.sequential) and canary_in_flight(spec, record)


def period_of(test: SequentialTest, *, time_scale: float = 1.0) -> int:
    """The CloudWatch ``Period`` of one look, in the plan's scaled time."""
    return cloudwatch_period(test.period * time_scale)


def delay_of(test: SequentialTest, *, time_scale: float = 1.0) -> float:
    return test.publication_delay * time_scale


def run_of(record: Record, test: SequentialTest) -> SequentialRun | None:
    """The test's evidence in the record, if it was folded under the test as declared now."""
    digest = fingerprint(test)
    return next((r for r in record.sequential if r.state.name == test.name and r.test == digest), None)


def _first(test: SequentialTest, record: Record, *, time_scale: float) -> float:
    """Where the first period not folded yet begins."""
    assert record.weight_at is not None
    period = period_of(test, time_scale=time_scale)
    start = float(math.ceil(record.weight_at / period) * period)
    run = run_of(record, test)
    through = run.state.through if run is not None else None
    return max(start, through) if through is not None else start


def due_periods(test: SequentialTest, record: Record, now: float, *, time_scale: float = 1.0) -> tuple[float, ...]:
    """Starts of the periods of ``test`` to read at ``now``: whole, published, not folded; oldest first."""
    period = period_of(test, time_scale=time_scale)
    start = _first(test, record, time_scale=time_scale)
    count = math.floor((now - delay_of(test, time_scale=time_scale) - start) / period + _EPSILON)
    return tuple(start + k * period for k in range(min(max(count, 0), MAX_LOOKS)))


def due_tests(
    spec: RolloutSpec, record: Record | None, now: float, *, time_scale: float = 1.0
) -> tuple[tuple[SequentialTest, tuple[float, ...]], ...]:
    """Each test of ``spec`` with periods to read at ``now`` (the shell batches them for every rollout)."""
    if record is None or not testing(spec, record):
        return ()
    found = ((t, due_periods(t, record, now, time_scale=time_scale)) for t in spec.analysis.sequential)
    return tuple((test, starts) for test, starts in found if starts)


def next_due(test: SequentialTest, record: Record, *, time_scale: float = 1.0) -> float:
    """When the next period of ``test`` can be read: its end plus the publication delay."""
    period = period_of(test, time_scale=time_scale)
    return _first(test, record, time_scale=time_scale) + period + delay_of(test, time_scale=time_scale)


def wake_after(spec: RolloutSpec, record: Record, now: float, *, time_scale: float = 1.0) -> float | None:
    """Seconds until the next period is due (None: nothing to read, or it is due already: the next tick
    reads it, and the quiet skip never skips a rollout with a period due)."""
    if not testing(spec, record):
        return None
    due = min(next_due(t, record, time_scale=time_scale) for t in spec.analysis.sequential)
    return due - now if due > now else None


# ---- folding -------------------------------------------------------------------------------------


def _counts(record: Record, test: SequentialTest, found: SequentialLooks) -> bool:
    """Looks count for the version in flight against its stable version, read for the test as declared."""
    return (
        found.test == fingerprint(test)
        and found.version == record.canary
        and found.stable == record.stable
        and record.weight_at is not None
    )


def _folded(
    state: SequentialState, found: SequentialLooks, *, since: float, settings: SequentialSettings
) -> SequentialState:
    for look in found.looks:
        # Only periods at the current weight, each once (a slow batch may bring one folded meanwhile).
        if look.start < since or (state.through is not None and look.start < state.through):
            continue
        state = fold(state, look, settings=settings)
    return state


def with_looks(spec: RolloutSpec, record: Record, looks: Mapping[str, SequentialLooks]) -> Record:
    """``record`` with this tick's looks folded in (declared tests only, declared order)."""
    runs: list[SequentialRun] = []
    for test in spec.analysis.sequential:
        run = run_of(record, test)
        found = looks.get(test.name)
        if found is not None and _counts(record, test, found):
            assert record.weight_at is not None
            settings = settings_of(test)
            before = run.state if run is not None else SequentialState(test.name)
            after = _folded(before, found, since=record.weight_at, settings=settings)
            if after != before:
                run = SequentialRun(fingerprint(test), after, settings)
        if run is not None:
            runs.append(run)
    return dataclasses.replace(record, sequential=tuple(runs)) if tuple(runs) != record.sequential else record


def proven_no_regression(spec: RolloutSpec, record: Record) -> bool:
    """``promoteEarly`` may end the current timed pause: every test proved "no regression" at this weight."""
    if not spec.analysis.promote_early or not testing(spec, record):
        return False
    for test in spec.analysis.sequential:
        run = run_of(record, test)
        if run is None:
            return False
        judged = verdict(run.state, settings=run.settings, since=record.weight_at)
        if judged.conclusion is not Conclusion.NO_REGRESSION:
            return False
    return True


def ended_early(record: Record, *, elapsed: float, duration: float) -> str:
    """The message of a pause ended by ``promoteEarly``."""
    proofs = "; ".join(
        f"{run.state.name}: {summary(run.state, settings=run.settings, since=record.weight_at)}"
        for run in record.sequential
    )
    return (
        f"version {record.canary} at {record.weight}%: pause ended after {elapsed:.0f}s of {duration:.0f}s "
        f"(promoteEarly): {proofs}"
    )


# ---- rules ---------------------------------------------------------------------------------------


def sequential_analysis(ctx: Ctx) -> Ctx | Decision:
    """Rule (safety, beside alarms, hooks and metrics): fold this tick's looks; a proven regression rolls back."""
    record = ctx.record
    if not ctx.spec.analysis.sequential or record.canary is None or record.bypass:
        return ctx
    record = with_looks(ctx.spec, record, ctx.observed.looks)
    ctx = ctx.with_record(record) if record is not ctx.record else ctx
    for run in record.sequential:
        if verdict(run.state, settings=run.settings).conclusion is not Conclusion.REGRESSION:
            continue
        message = (
            f"regression detected by sequential test {run.state.name}: "
            f"{summary(run.state, settings=run.settings)}: version {record.canary} rolled back to "
            f"{record.stable}; `retry` or a spec change starts it again"
        )
        return withdraw_decision(
            ctx,
            phase=Phase.ROLLED_BACK,
            reason=Reason.REGRESSION_DETECTED,
            message=message,
            outcome=Outcome.ROLLED_BACK,
            fail=True,
        )
    return ctx


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S")


def outlook(spec: RolloutSpec, record: Record, now: float, *, time_scale: float = 1.0) -> tuple[str, ...]:
    """What the next look of each test may do, for ``plan``: one line per test."""
    if not testing(spec, record):
        return ()
    early = spec.analysis.promote_early
    lines = []
    for test in spec.analysis.sequential:
        run = run_of(record, test)
        state = run.state if run is not None else SequentialState(test.name)
        settings = run.settings if run is not None else settings_of(test)
        period = period_of(test, time_scale=time_scale)
        start = _first(test, record, time_scale=time_scale)
        due = next_due(test, record, time_scale=time_scale)
        when = "now" if due <= now else f"in {due - now:.0f}s"
        outcomes = "a proven regression rolls back at once"
        if early:
            outcomes += "; once every test proves none, a timed pause ends early (promoteEarly)"
        lines.append(
            f"sequential {test.name}: {summary(state, settings=settings, since=record.weight_at)}; next look {when}"
            f" (period {_clock(start)}-{_clock(start + period)} UTC): {outcomes}"
        )
    return tuple(lines)


__all__ = [
    "MAX_LOOKS",
    "delay_of",
    "due_periods",
    "due_tests",
    "ended_early",
    "fingerprint",
    "next_due",
    "outlook",
    "period_of",
    "proven_no_regression",
    "run_of",
    "sequential_analysis",
    "settings_of",
    "testing",
    "wake_after",
    "with_looks",
]
