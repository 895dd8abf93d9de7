"""Every Prometheus figure the controller exports, defined in one class on its own registry.

The engine reports what happened (a status, a transition, a reconcile, an AWS call) and ``Metrics``
turns it into series. Keeping the translation here means the engine holds no metric objects and a
metric name is spelt in exactly one place (``docs/metrics.md`` documents each one).

Shape decisions, and why:

- A private ``CollectorRegistry`` per ``Metrics``: tests and several engines in one process must
  not see each other's series, which the global registry would force.
- Per-rollout series carry ``namespace``, ``name``, ``function`` and ``alias``. Every child created
  for a rollout is remembered so ``rollout_removed`` can delete exactly those series: a dashboard
  must not keep showing a rollout that is no longer managed.
- Versions are exported as an info-like gauge (``role``/``version`` labels, value 1) rather than as
  a number: Lambda versions are digits today, but an info series also joins cleanly with other
  per-rollout series and never silently turns a non-numeric value into NaN.
- Time per phase is a histogram observed when a phase is left (``_sum`` is the total seconds spent
  in it) plus a gauge holding when the current phase began, so
  ``time() - lambda_rollouts_rollout_phase_started_timestamp_seconds`` gives the running phase.
- Phase transitions are reported by the engine with the core's ``reason``; the mapping of those
  reasons to the small, documented label sets of rollbacks and promotions lives here
  (``rollback_reason_label`` / ``promotion_kind``), so dashboards do not depend on the exact
  wording of core reasons.
- AWS calls and budget waits carry ``account`` and ``region``: one controller serves several
  accounts, each with its own quotas and budget, and "which account is throttled" is the first
  question when one is. Both come from the configuration (a role's account, ``default`` for the
  controller's own credentials), so they add a handful of series, not one per rollout. The clients
  of each account report through ``aws_observer(account=..., region=...)``.
"""

from __future__ import annotations

import platform
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase

from controller import __version__
from controller.core.reasons import NOT_AN_END, Outcome, Reason
from controller.core.types import Phase, SequentialEvidence, Status, Verb
from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    LinearStrategy,
    PresetStrategy,
    RolloutSpec,
    Strategy,
)

PREFIX = "lambda_rollouts_"
CONTENT_TYPE = CONTENT_TYPE_LATEST
ROLLOUT_LABELS = ("namespace", "name", "function", "alias")
SCOPE_LABELS = ("account", "region")
#: The ``account`` label of the controller's own credentials (its account is never looked up).
DEFAULT_ACCOUNT_LABEL = "default"

ROLLBACK_REASONS = ("alarm", "analysis", "deadline", "manual", "supersede")
PROMOTION_KINDS = ("auto", "manual", "full")
ROLLOUT_OUTCOMES = (Phase.HEALTHY, Phase.ROLLED_BACK, Phase.DEGRADED)
NOTIFICATION_OUTCOMES = ("sent", "failed")
# The two e-values of a sequential test: against "no worse than +maxIncrease", and against "worse".
HYPOTHESES = ("regression", "no_regression")
REACTION_SOURCES = ("poll", "event")
ALARM_EVENT_MISMATCHES = ("event_only", "poll_only")

# A rollout is "in flight" in these phases: entering one starts an attempt, leaving for an outcome ends it.
_ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})

# Exact core reasons first; the keyword table below catches wording this table does not know yet,
# so a new core reason lands in a sensible bucket instead of disappearing from the rollback panel.
_ROLLBACK_REASON_BY_CORE_REASON: Mapping[str, str] = {
    Reason.ALARM_FIRED: "alarm",
    Reason.ANALYSIS_FAILED: "analysis",
    Reason.REGRESSION_DETECTED: "analysis",
    Reason.HOOK_FAILED: "analysis",
    Reason.PROGRESS_DEADLINE_EXCEEDED: "deadline",
    Reason.WARMUP_TIMEOUT: "deadline",
    Reason.ABORTED: "manual",
    Reason.UNDONE: "manual",
    Reason.SPEC_REVERTED: "manual",
    Reason.SUPERSEDED: "supersede",
}
# A promotion finished by one of these history reasons is ``full``.
_FULL_PROMOTIONS = frozenset({Reason.PROMOTE_FULL, Reason.EMERGENCY_BYPASS})
_ROLLBACK_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("alarm", "alarm"),
    ("deadline", "deadline"),
    ("timeout", "deadline"),
    ("timedout", "deadline"),
    ("supersed", "supersede"),
    ("abort", "manual"),
    ("undo", "manual"),
    ("manual", "manual"),
    ("request", "manual"),
)

# An error "kind" becomes a label value; free text (a message with spaces, an ARN) would create one
# series per distinct message, so anything that does not look like an identifier is folded.
_ERROR_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")

_M = TypeVar("_M", bound=MetricWrapperBase)

_DAY = 24 * 3600.0
_ROLLOUT_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, _DAY)
_REACTION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0)
_RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def rollback_reason_label(reason: str) -> str:
    """Map a core reason to one of ``ROLLBACK_REASONS``; automatic failures not otherwise known are ``analysis``."""
    if reason in _ROLLBACK_REASON_BY_CORE_REASON:
        return _ROLLBACK_REASON_BY_CORE_REASON[reason]
    lowered = reason.lower()
    for keyword, label in _ROLLBACK_KEYWORDS:
        if keyword in lowered:
            return label
    return "analysis"


def promotion_kind(status: Status) -> str:
    """One of ``PROMOTION_KINDS`` for the attempt that just made ``status.stable_version`` Healthy.

    The core always reaches Healthy with reason ``Promoted``, so the kind is read from the attempt's
    history: ``full`` if a ``promote --full`` (or the bypass) finished it, ``manual`` if a ``promote``
    request was logged during it, ``auto`` otherwise.
    """
    kind, seen_end = "auto", False
    for entry in reversed(status.history):
        if entry.version != status.stable_version:
            break
        if entry.outcome == Outcome.PROMOTED:
            if entry.reason in _FULL_PROMOTIONS:
                return "full"
            if seen_end:
                break  # an earlier attempt of the same version
            seen_end = True
        elif entry.outcome == Outcome.REQUESTED and entry.reason == Verb.PROMOTE:
            kind = "manual"
        elif entry.outcome not in NOT_AN_END:
            break
    return kind


def strategy_label(strategy: Strategy) -> str:
    """The ``strategy`` label of ``rollout_info``: canary, linear, allAtOnce, blueGreen, or a preset's name."""
    match strategy:
        case PresetStrategy(name=name):
            return name
        case CanaryStrategy():
            return "canary"
        case LinearStrategy():
            return "linear"
        case AllAtOnceStrategy():
            return "allAtOnce"
        case BlueGreenStrategy():
            return "blueGreen"
    return type(strategy).__name__


def error_kind_label(error: str) -> str:
    """A bounded label value for a reconcile error kind (an exception class name, a short code)."""
    return error if _ERROR_KIND.match(error) else "other"


def _evalues(evidence: SequentialEvidence) -> tuple[tuple[str, float], ...]:
    return (("regression", evidence.regression), ("no_regression", evidence.no_regression))


@dataclass
class _Rollout:
    """What ``Metrics`` remembers about one rollout between calls."""

    # Every (metric, label values) created for this rollout, so removal deletes exactly these.
    children: dict[MetricWrapperBase, set[tuple[str, ...]]] = field(default_factory=dict)
    phase: Phase | None = None
    phase_since: float | None = None
    # When the current attempt entered an active phase; None after a restart mid-rollout, when the
    # true start is unknown (no duration is observed rather than a wrong one).
    started_at: float | None = None


class Metrics:
    """The controller's metrics on a private registry; the methods are what the engine calls."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._rollouts: dict[tuple[str, str, str, str], _Rollout] = {}
        r = self.registry
        rl = ROLLOUT_LABELS

        self.build_info = Gauge(
            f"{PREFIX}build_info", "Build of the running controller (value 1).", ["version", "python"], registry=r
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.leader = Gauge(f"{PREFIX}leader", "1 when this replica holds leadership and reconciles.", registry=r)
        self.ready = Gauge(f"{PREFIX}ready", "1 when /readyz answers 200.", registry=r)

        # ---- per rollout: state ----
        self.rollout_info = Gauge(
            f"{PREFIX}rollout_info", "A managed rollout (value 1), with its strategy.", [*rl, "strategy"], registry=r
        )
        self.phase = Gauge(
            f"{PREFIX}rollout_phase", "1 for the rollout's current phase, 0 for the others.", [*rl, "phase"], registry=r
        )
        self.canary_weight = Gauge(
            f"{PREFIX}rollout_canary_weight_percent",
            "Percent of the alias's traffic sent to the canary version (0-100).",
            rl,
            registry=r,
        )
        self.current_step = Gauge(
            f"{PREFIX}rollout_current_step",
            "The step under way, counted from 1 (equal to rollout_steps once finished, 0 with nothing in flight).",
            rl,
            registry=r,
        )
        self.steps = Gauge(
            f"{PREFIX}rollout_steps", "Steps of the rollout's plan, the final move to 100% included.", rl, registry=r
        )
        self.orphaned = Gauge(
            f"{PREFIX}rollout_orphaned",
            "1 while the rollout's document is gone and it was left mid-rollout (nobody moves its alias).",
            rl,
            registry=r,
        )
        self.step_started = Gauge(
            f"{PREFIX}rollout_step_started_timestamp_seconds",
            "When the current step began (Unix time).",
            rl,
            registry=r,
        )
        self.progress_deadline = Gauge(
            f"{PREFIX}rollout_progress_deadline_seconds",
            "The rollout's progressDeadline, when it declares one.",
            rl,
            registry=r,
        )
        self.step_allowance = Gauge(
            f"{PREFIX}rollout_step_allowance_seconds",
            "How long the current step may last before progressDeadline counts (a timed pause's duration); "
            "absent while unbounded (a pause until promote).",
            rl,
            registry=r,
        )
        self.version_info = Gauge(
            f"{PREFIX}rollout_version_info",
            "Versions behind the alias (value 1): role is stable or canary.",
            [*rl, "role", "version"],
            registry=r,
        )
        self.phase_started = Gauge(
            f"{PREFIX}rollout_phase_started_timestamp_seconds",
            "When the rollout entered its current phase (Unix time).",
            rl,
            registry=r,
        )
        self.alarm_state = Gauge(
            f"{PREFIX}alarm_state",
            "State of each watched CloudWatch alarm (value 1, state label).",
            [*rl, "alarm", "state"],
            registry=r,
        )
        self.evidence = Gauge(
            f"{PREFIX}analysis_evidence",
            "log10 of a sequential test's e-value for the attempt in flight, by hypothesis proven "
            "(regression | no_regression): 0 is no evidence, analysis_evidence_bound proves it.",
            [*rl, "test", "hypothesis"],
            registry=r,
        )
        self.evidence_bound = Gauge(
            f"{PREFIX}analysis_evidence_bound",
            "log10 of the e-value at which a sequential test concludes: 1 / (1 - confidence).",
            [*rl, "test"],
            registry=r,
        )

        # ---- per rollout: what happened ----
        self.transitions = Counter(
            f"{PREFIX}rollout_transitions_total", "Phase transitions.", [*rl, "from_phase", "to_phase"], registry=r
        )
        self.rollbacks = Counter(f"{PREFIX}rollbacks_total", "Rollbacks, by reason.", [*rl, "reason"], registry=r)
        self.promotions = Counter(
            f"{PREFIX}promotions_total", "Rollouts promoted to Healthy, by kind.", [*rl, "kind"], registry=r
        )
        self.alias_writes = Counter(
            f"{PREFIX}alias_writes_total", "Alias writes made, by kind (rollout|rollback).", [*rl, "kind"], registry=r
        )
        self.phase_duration = Histogram(
            f"{PREFIX}rollout_phase_duration_seconds",
            "Time spent in a phase, observed when the phase is left.",
            [*rl, "phase"],
            buckets=_ROLLOUT_BUCKETS,
            registry=r,
        )
        self.rollout_duration = Histogram(
            f"{PREFIX}rollout_duration_seconds",
            "Duration of a rollout attempt, from start to its outcome.",
            [*rl, "outcome"],
            buckets=_ROLLOUT_BUCKETS,
            registry=r,
        )
        self.reaction = Histogram(
            f"{PREFIX}rollback_reaction_seconds",
            "From an alarm first known in ALARM to the alias restored to stable, by source (poll|event).",
            [*rl, "source"],
            buckets=_REACTION_BUCKETS,
            registry=r,
        )
        self.reconcile_duration = Histogram(
            f"{PREFIX}reconcile_duration_seconds", "Time of one reconcile.", rl, buckets=_RECONCILE_BUCKETS, registry=r
        )
        self.reconcile_errors = Counter(
            f"{PREFIX}reconcile_errors_total", "Reconciles that failed, by kind.", [*rl, "kind"], registry=r
        )

        self.drift_reverted = Counter(
            f"{PREFIX}drift_reverted_total",
            "Hand-made alias changes written back (driftPolicy: Revert).",
            rl,
            registry=r,
        )

        # ---- controller-wide: AWS, per account and region ----
        sl = SCOPE_LABELS
        self.api_calls = Counter(
            f"{PREFIX}aws_api_calls_total",
            "AWS API calls, by outcome.",
            ["service", "operation", "outcome", *sl],
            registry=r,
        )
        self.api_duration = Histogram(
            f"{PREFIX}aws_api_call_duration_seconds",
            "Latency of AWS API calls.",
            ["service", "operation", *sl],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.api_retries = Counter(
            f"{PREFIX}aws_api_retries_total",
            "AWS call attempts that failed transiently and were retried, by reason.",
            ["service", "operation", "reason", *sl],
            registry=r,
        )
        self.budget_wait_seconds = Histogram(
            f"{PREFIX}aws_budget_wait_seconds",
            "Time a call waited for the API budget (token bucket) of its family.",
            ["family", *sl],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.scope_credentials = Gauge(
            f"{PREFIX}aws_credentials_available",
            "1 while the credentials of an account and region work (its role assumed), 0 while they do not.",
            sl,
            registry=r,
        )
        self.scope_rollouts = Gauge(
            f"{PREFIX}scope_rollouts",
            "Rollouts this replica serves in an account and region.",
            sl,
            registry=r,
        )
        self.credential_refreshes = Counter(
            f"{PREFIX}aws_credential_refreshes_total",
            "AssumeRole calls for an account's credentials, by outcome (ok|error).",
            [*sl, "outcome"],
            registry=r,
        )

        # ---- controller-wide: push-mode alarm events (``--alarm-events``) ----
        self.alarm_events_up = Gauge(
            f"{PREFIX}alarm_events_up",
            "1 while this replica consumes alarm events (--alarm-events; mode auto|queue), 0 while it cannot "
            "(degraded: polling alone sees alarms) or does not reconcile (a standby); absent when off.",
            ["mode"],
            registry=r,
        )
        self.alarm_event_mismatches = Counter(
            f"{PREFIX}alarm_event_mismatch_total",
            "Alarm events and polls that disagreed beyond the tolerance, by kind (event_only|poll_only).",
            ["kind"],
            registry=r,
        )
        self._alarm_events_mode: str | None = None

        # ---- controller-wide: notifications ----
        self.notifications = Counter(
            f"{PREFIX}notifications_total",
            "Notification messages finished, by target and outcome (sent|failed).",
            ["target", "outcome"],
            registry=r,
        )
        self.notifications_dropped = Counter(
            f"{PREFIX}notification_queue_dropped_total",
            "Notification messages dropped because the target's queue was full.",
            ["target"],
            registry=r,
        )

    # ---- bookkeeping ---------------------------------------------------------------------------

    @staticmethod
    def _key(spec: RolloutSpec) -> tuple[str, str, str, str]:
        return (spec.namespace, spec.name, spec.function_name, spec.alias)

    def _state(self, spec: RolloutSpec) -> _Rollout:
        return self._rollouts.setdefault(self._key(spec), _Rollout())

    def _child(self, metric: _M, spec: RolloutSpec, *extra: str) -> _M:
        """The rollout's child of ``metric`` (extra label values after the rollout's), remembered for removal."""
        values = (*self._key(spec), *extra)
        self._state(spec).children.setdefault(metric, set()).add(values)
        return metric.labels(*values)

    def _exclusive(self, metric: Gauge, spec: RolloutSpec, series: Iterable[tuple[str, ...]]) -> None:
        """Set ``series`` of an info-like gauge to 1 and delete the rollout's other series of it.

        Used where a label value changes over time (versions, alarm states, strategy): the old
        value must vanish, not linger beside the new one.
        """
        wanted = {(*self._key(spec), *extra) for extra in series}
        known = self._state(spec).children.setdefault(metric, set())
        for stale in known - wanted:
            metric.remove(*stale)
        known.intersection_update(wanted)
        for values in wanted:
            known.add(values)
            metric.labels(*values).set(1)

    def _values(self, metric: Gauge, spec: RolloutSpec, values: Mapping[tuple[str, ...], float]) -> None:
        """Set the rollout's series of ``metric`` to ``values`` (extra label values -> value) and delete
        the rollout's other series of it (a test that ended, or was removed from the document)."""
        wanted = {(*self._key(spec), *extra): value for extra, value in values.items()}
        known = self._state(spec).children.setdefault(metric, set())
        for stale in known - set(wanted):
            metric.remove(*stale)
        known.intersection_update(wanted)
        for labels, value in wanted.items():
            known.add(labels)
            metric.labels(*labels).set(value)

    def _optional(self, metric: Gauge, spec: RolloutSpec, value: float | None) -> None:
        """Set the rollout's series of ``metric`` to ``value``, or delete it while there is none."""
        if value is not None:
            self._child(metric, spec).set(value)
            return
        values = self._key(spec)
        known = self._state(spec).children.get(metric, set())
        if values in known:
            known.discard(values)
            metric.remove(*values)

    # ---- per rollout -----------------------------------------------------------------------------

    def rollout_status(self, spec: RolloutSpec, status: Status, *, strategy: str) -> None:
        """Export a rollout's current status; called on every status change."""
        with self._lock:
            self._exclusive(self.rollout_info, spec, [(strategy,)])
            for phase in Phase:
                self._child(self.phase, spec, phase.value).set(1 if phase == status.phase else 0)
            self._child(self.canary_weight, spec).set(status.canary_weight)
            self._child(self.current_step, spec).set(status.current_step)
            self._child(self.steps, spec).set(status.steps)
            self._child(self.orphaned, spec).set(1 if status.phase is Phase.ORPHANED else 0)
            if status.step_started_at is not None:
                self._child(self.step_started, spec).set(status.step_started_at)
            if spec.progress_deadline is not None:
                self._child(self.progress_deadline, spec).set(spec.progress_deadline)
            self._optional(self.step_allowance, spec, status.step_allowance)
            versions = [("stable", status.stable_version), ("canary", status.canary_version)]
            self._exclusive(self.version_info, spec, [(role, v) for role, v in versions if v is not None])
            evidence: dict[tuple[str, ...], float] = {
                (e.test, hypothesis): value for e in status.evidence for hypothesis, value in _evalues(e)
            }
            self._values(self.evidence, spec, evidence)
            self._values(self.evidence_bound, spec, {(e.test,): e.bound for e in status.evidence})
            # Counters start at 0 for every label value: Prometheus's increase() and rate() cannot see
            # the first event of a series that appears already at 1, and a quiet rollout should
            # still show a 0 rather than "no data".
            self._child(self.drift_reverted, spec)
            for counter, values in (
                (self.rollbacks, ROLLBACK_REASONS),
                (self.promotions, PROMOTION_KINDS),
                (self.alias_writes, ("rollout", "rollback")),
            ):
                for label in values:
                    self._child(counter, spec, label)
            state = self._state(spec)
            if state.phase is None:
                state.phase = status.phase

    def rollout_event(
        self, spec: RolloutSpec, *, from_phase: Phase, to_phase: Phase, reason: str, now: float, promotion: str = "auto"
    ) -> None:
        """Count a transition and derive phase times, attempt durations, rollbacks and promotions from it.

        ``promotion`` is the kind counted when the transition promotes (``promotion_kind``).
        """
        with self._lock:
            state = self._state(spec)
            if from_phase != to_phase:
                self._child(self.transitions, spec, from_phase.value, to_phase.value).inc()
                if state.phase == from_phase and state.phase_since is not None:
                    self._child(self.phase_duration, spec, from_phase.value).observe(max(0.0, now - state.phase_since))
                state.phase, state.phase_since = to_phase, now
                self._child(self.phase_started, spec).set(now)

            rollback = self._rollback_reason(from_phase=from_phase, to_phase=to_phase, reason=reason)
            if rollback is not None:
                self._child(self.rollbacks, spec, rollback).inc()
            if rollback is None and to_phase == Phase.HEALTHY and from_phase in _ACTIVE_PHASES:
                self._child(self.promotions, spec, promotion).inc()

            if to_phase in ROLLOUT_OUTCOMES and from_phase in _ACTIVE_PHASES:
                if state.started_at is not None:
                    seconds = max(0.0, now - state.started_at)
                    self._child(self.rollout_duration, spec, to_phase.value).observe(seconds)
                state.started_at = None
            elif to_phase in _ACTIVE_PHASES and (from_phase not in _ACTIVE_PHASES or rollback == "supersede"):
                # A superseded canary ends one attempt and starts the next one from stable.
                state.started_at = now

    @staticmethod
    def _rollback_reason(*, from_phase: Phase, to_phase: Phase, reason: str) -> str | None:
        """The rollback label of a transition, or None when the transition is not a rollback."""
        if to_phase == Phase.ROLLED_BACK:
            return rollback_reason_label(reason)  # includes undo of a finished rollout
        if from_phase not in _ACTIVE_PHASES:
            return None  # nothing was in flight, so nothing was rolled back
        if to_phase == Phase.DEGRADED:
            return rollback_reason_label(reason)
        if reason == Reason.SPEC_REVERTED:
            return "manual"  # the spec set back to the stable version withdrew the new one
        label = rollback_reason_label(reason)
        return label if label == "supersede" else None

    def rollback_reaction(self, spec: RolloutSpec, *, seconds: float, source: str = "poll") -> None:
        """Observe the time from an alarm first known in ALARM to the alias restored to stable.

        ``source``: how the controller knew, ``poll`` (a tick's read) or ``event`` (a pushed alarm event).
        """
        with self._lock:
            self._child(self.reaction, spec, source if source in REACTION_SOURCES else "poll").observe(seconds)

    def alias_written(self, spec: RolloutSpec, *, rollback: bool = False) -> None:
        """Count one alias write (``rollback``: a write that restores stable)."""
        with self._lock:
            self._child(self.alias_writes, spec, "rollback" if rollback else "rollout").inc()

    def alarm_states(self, spec: RolloutSpec, states: Mapping[str, str]) -> None:
        """Export each watched alarm's state (OK, ALARM, INSUFFICIENT_DATA, or missing); others vanish."""
        with self._lock:
            self._exclusive(self.alarm_state, spec, states.items())

    def drift_was_reverted(self, spec: RolloutSpec) -> None:
        """Count one hand-made alias change written back (``driftPolicy: Revert``)."""
        with self._lock:
            self._child(self.drift_reverted, spec).inc()

    def rollout_removed(self, spec: RolloutSpec) -> None:
        """Delete every series of the rollout: it is no longer managed."""
        with self._lock:
            state = self._rollouts.pop(self._key(spec), None)
            if state is None:
                return
            for metric, series in state.children.items():
                for values in series:
                    metric.remove(*values)

    def reconcile_finished(self, spec: RolloutSpec, *, seconds: float, error: str | None) -> None:
        """Observe one reconcile; ``error`` is a short kind (exception class name) or None."""
        with self._lock:
            self._child(self.reconcile_duration, spec).observe(seconds)
            if error is not None:
                self._child(self.reconcile_errors, spec, error_kind_label(error)).inc()

    # ---- controller-wide -------------------------------------------------------------------------

    def api_call(
        self,
        *,
        service: str,
        operation: str,
        outcome: str,
        seconds: float,
        account: str = DEFAULT_ACCOUNT_LABEL,
        region: str = "",
    ) -> None:
        """One AWS call attempt: outcome is ok, throttled, error, conflict or not_found."""
        self.api_calls.labels(service, operation, outcome, account, region).inc()
        self.api_duration.labels(service, operation, account, region).observe(seconds)

    def budget_wait(
        self, *, family: str, seconds: float, account: str = DEFAULT_ACCOUNT_LABEL, region: str = ""
    ) -> None:
        """Time one call waited for a token of its API family's budget."""
        self.budget_wait_seconds.labels(family, account, region).observe(seconds)

    def aws_observer(self, *, account: str, region: str) -> ScopedAws:
        """What the clients of one account and region report their calls to (an ``ApiObserver``)."""
        return ScopedAws(self, account=account, region=region)

    def scope_state(self, *, account: str, region: str, available: bool, rollouts: int) -> None:
        """Whether an account's credentials work, and how many rollouts this replica serves there."""
        self.scope_credentials.labels(account, region).set(1 if available else 0)
        self.scope_rollouts.labels(account, region).set(rollouts)

    def credential_refresh(self, *, account: str, region: str, ok: bool) -> None:
        """One AssumeRole made for an account's credentials."""
        self.credential_refreshes.labels(account, region, "ok" if ok else "error").inc()

    # ---- push-mode alarm events ---------------------------------------------------------------------

    def alarm_events_configured(self, *, mode: str) -> None:
        """Push mode is on (``auto`` or ``queue``): its series exist from the start, at 0."""
        self._alarm_events_mode = mode
        self.alarm_events_up.labels(mode).set(0)
        for kind in ALARM_EVENT_MISMATCHES:
            self.alarm_event_mismatches.labels(kind)

    def set_alarm_events_up(self, up: bool) -> None:
        if self._alarm_events_mode is not None:
            self.alarm_events_up.labels(self._alarm_events_mode).set(1 if up else 0)

    def alarm_event_mismatch(self, *, kind: str) -> None:
        """One disagreement between the alarm events and the polls (``event_only`` or ``poll_only``)."""
        self.alarm_event_mismatches.labels(kind).inc()

    def api_retry(
        self, *, service: str, operation: str, reason: str, account: str = DEFAULT_ACCOUNT_LABEL, region: str = ""
    ) -> None:
        """One attempt that failed transiently and is retried."""
        self.api_retries.labels(service, operation, reason, account, region).inc()

    # ---- notifications (``controller.notify.delivery.NotifyObserver``) -------------------------------

    def notification_target(self, *, target: str) -> None:
        """A configured target: its series start at 0, so the first message shows in increase()."""
        for outcome in NOTIFICATION_OUTCOMES:
            self.notifications.labels(target, outcome)
        self.notifications_dropped.labels(target)

    def notification(self, *, target: str, outcome: str) -> None:
        """One message to ``target`` finished: ``outcome`` is sent or failed."""
        self.notifications.labels(target, outcome).inc()

    def notification_dropped(self, *, target: str) -> None:
        """One message to ``target`` dropped: its queue was full."""
        self.notifications_dropped.labels(target).inc()

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def set_ready(self, ready: bool) -> None:
        self.ready.set(1 if ready else 0)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format, for ``/metrics``."""
        return generate_latest(self.registry)


@dataclass(frozen=True)
class ScopedAws:
    """``Metrics`` as the ``ApiObserver`` of one account and region's clients."""

    metrics: Metrics
    account: str
    region: str

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        self.metrics.api_call(
            service=service,
            operation=operation,
            outcome=outcome,
            seconds=seconds,
            account=self.account,
            region=self.region,
        )

    def api_retry(self, *, service: str, operation: str, reason: str) -> None:
        self.metrics.api_retry(
            service=service, operation=operation, reason=reason, account=self.account, region=self.region
        )

    def budget_wait(self, *, family: str, seconds: float) -> None:
        self.metrics.budget_wait(family=family, seconds=seconds, account=self.account, region=self.region)
