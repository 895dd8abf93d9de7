"""The vocabulary shared by the core and the shell: record, observation, actions, decision, status.

``decide(spec, record, observed, now)`` maps these inputs to a ``Decision`` and touches nothing else.
The shell builds an ``Observed`` from batched AWS reads, applies ``Decision.actions`` in order and
persists ``Decision.record`` (as tags on the function) when it changed. Times are epoch seconds.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.ownership import Ownership
from controller.core.reasons import Reason
from controller.core.sequential import Look, SequentialSettings, SequentialState
from controller.document.model import Hook

# Weights are compared with a tolerance because AWS returns them as JSON floats.
WEIGHT_TOLERANCE = 1e-6


class Phase(enum.StrEnum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    PROMOTING = "Promoting"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    INVALID = "Invalid"
    # Its document is gone (deleted, renamed away) while the new version still had traffic: nobody
    # moves the alias any more, and that must be loud. Shown from the record until the document returns.
    ORPHANED = "Orphaned"


class Verb(enum.StrEnum):
    """Control requests an operator can make (``lambda-rollouts promote NAME`` ...)."""

    PROMOTE = "promote"
    PROMOTE_FULL = "promote-full"
    # ``promote --full --skip-analysis``: finish now even while a watched alarm or analysis fails.
    PROMOTE_BYPASS = "promote-bypass"
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"
    UNDO = "undo"


@dataclass(frozen=True)
class AliasRouting:
    """Where an alias sends traffic: ``primary`` plus at most one ``additional`` version at ``weight`` (0-1)."""

    primary: str
    additional: str | None = None
    weight: float = 0.0

    def same_as(self, other: AliasRouting | None) -> bool:
        if other is None:
            return False
        if self.primary != other.primary:
            return False
        mine = self.additional if self.weight > WEIGHT_TOLERANCE else None
        theirs = other.additional if other.weight > WEIGHT_TOLERANCE else None
        if mine != theirs:
            return False
        return mine is None or abs(self.weight - other.weight) <= WEIGHT_TOLERANCE


@dataclass(frozen=True)
class AliasWrite:
    """An alias write the core asked for; kept in the record *before* it is made (write-ahead)."""

    alias: str
    routing: AliasRouting
    # What the alias held when the write was decided (None: it did not exist). A later decide that
    # finds the alias still like this re-issues the write; finding anything else is drift.
    previous: AliasRouting | None = None


@dataclass(frozen=True)
class Request:
    """A control request found next to the rollout (function tag or custom-resource annotation)."""

    id: str
    verb: Verb
    at: float
    by: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One finished rollout attempt: which version, how it ended and why; or a note within one
    (``Requested``: a control request; ``DriftReverted``: a hand-made alias change written back)."""

    version: str
    outcome: str  # Promoted | RolledBack | Aborted | Superseded | Undone | Degraded | Requested | DriftReverted
    reason: str
    at: float
    by: str = ""
    # What happened, in words, when the outcome alone does not say (DriftReverted: was X, set back to Y).
    detail: str = ""


@dataclass(frozen=True)
class FailedVersion:
    """A version that must not get traffic again until ``retry`` or a change of the rollout's spec hash."""

    version: str
    spec_hash: str
    reason: str


class Verdict(enum.StrEnum):
    """What an analysis provider (a hook; later alarms and metric queries) concluded about a version."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    RUNNING = "Running"


@dataclass(frozen=True)
class HookRun:
    """The answer of one lifecycle hook (``beforeAllowTraffic`` / ``afterAllowTraffic``) for the rollout in flight.

    The shell puts it in the record after running the hook, so the next decide acts on it; a crash
    before that re-runs the hook (hooks must be idempotent) and never skips it.
    """

    name: str
    outcome: Verdict
    reason: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class HookAnswer:
    """What a lifecycle hook run answered, as the shell hands it to the core (``Observed.hook_answers``).

    ``version`` and ``attempt`` (the record's ``started_at`` when the hook was asked for) say which
    rollout attempt it was run for: an answer that arrives after that attempt ended (rolled back by
    an alarm, aborted) is ignored by the core, never applied to a later attempt.
    """

    name: str
    version: str
    attempt: float | None
    outcome: Verdict
    reason: str = ""
    at: float = 0.0


class Trigger(enum.StrEnum):
    """The transitions a subscription can ask to hear about (``subscriptions[].on``)."""

    STARTED = "Started"
    WAITING_FOR_PROMOTION = "WaitingForPromotion"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    DRIFT_DETECTED = "DriftDetected"
    INVALID = "Invalid"
    ORPHANED = "Orphaned"


@dataclass(frozen=True)
class Announcement:
    """One transition waiting in the record's outbox (``controller.core.announce``): everything a
    message says, as it was at the transition.

    ``step`` / ``steps`` say "step 2 of 4" (0: not on a plan step), ``weight`` the canary's percent,
    ``reason`` the core's machine reason, ``by`` who asked (manual actions), ``at`` epoch seconds.
    """

    id: str
    trigger: Trigger
    attempt: str
    at: float
    version: str | None = None
    stable: str | None = None
    weight: int = 0
    step: int = 0
    steps: int = 0
    phase: Phase | None = None
    reason: str = ""
    message: str = ""
    by: str = ""
    discriminator: str = ""


@dataclass(frozen=True)
class MetricState:
    """Metric ``name``'s measurements for the rollout in flight, compactly: the consecutive counts
    and the last one (its value, the stable baseline when compared, when it was taken, its verdict).

    ``value`` None with a Successful verdict means an operator accepted an inconclusive analysis.
    """

    name: str
    outcome: Verdict = Verdict.RUNNING
    failures: int = 0  # consecutive failed measurements
    no_data: int = 0  # consecutive measurements without data
    value: float | None = None
    stable: float | None = None
    at: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """One measurement of one metric, taken by the shell for the version ``version`` (the canary).

    ``value`` None: no data. ``window_start``: where the measured period begins (the core only
    counts periods that begin after the weight was applied). ``samples``: the Invocations count in
    the period when the metric declares ``minSamples``.
    """

    version: str
    at: float
    window_start: float
    value: float | None = None
    stable: float | None = None
    samples: float | None = None


@dataclass(frozen=True)
class SequentialRun:
    """One sequential test of the attempt in flight, as the durable record keeps it.

    ``test`` fingerprints the test as the document declares it (metrics, dimensions, period, bounds):
    a state folded under other settings is not this test's, and it starts again. ``settings`` are kept
    so that a reader without the document (``get``) judges the evidence exactly as the controller does.
    """

    test: str
    state: SequentialState
    settings: SequentialSettings = field(default_factory=SequentialSettings)


@dataclass(frozen=True)
class SequentialLooks:
    """The complete periods of one sequential test that the shell read this tick, in time order, for
    the canary ``version`` against ``stable`` and the test fingerprinted ``test``."""

    test: str
    version: str
    stable: str
    looks: tuple[Look, ...] = ()


@dataclass(frozen=True)
class SequentialEvidence:
    """One sequential test's evidence as every surface shows it (``controller.core.status``)."""

    test: str
    canary_failures: int
    canary_requests: int
    stable_failures: int
    stable_requests: int
    regression: float  # log10 of the e-value against "no worse than +maxIncrease"
    no_regression: float  # log10 of the e-value against "worse than +maxIncrease"
    bound: float  # log10 of the e-value that proves either: 1 / (1 - confidence)
    conclusion: str  # Regression | NoRegression | Continue
    looks: int = 0


@dataclass(frozen=True)
class Record:
    """The durable state of one rollout, stored on the function (tags) and mirrored into ``.status``.

    It holds only what cannot be re-observed: where in the plan we are, since when, what failed,
    which control request was handled, and the alias write in flight (``pending``).
    """

    spec_hash: str = ""
    phase: Phase = Phase.PENDING
    stable: str | None = None
    canary: str | None = None
    previous_stable: str | None = None
    step_index: int = 0
    # When the current step began; for a pause right after a weight, when that weight was applied.
    step_started_at: float | None = None
    started_at: float | None = None
    weight: int = 0  # percent of traffic on the canary, as last written
    pending: AliasWrite | None = None
    paused_by_request: bool = False
    last_request: str | None = None
    failed: tuple[FailedVersion, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    reason: str = ""
    message: str = ""
    # Lifecycle hook answers for the rollout in flight; cleared when it starts, ends or its spec changes.
    hooks: tuple[HookRun, ...] = ()
    # When the current canary weight was confirmed on the alias: measurements count from there.
    weight_at: float | None = None
    # Metric analysis of the rollout in flight (``spec.analysis.metrics``); cleared like ``hooks``.
    metrics: tuple[MetricState, ...] = ()
    # Sequential analysis of the attempt in flight (``spec.analysis.sequential``); cleared like ``hooks``.
    sequential: tuple[SequentialRun, ...] = ()
    # ``promote --full --skip-analysis`` is finishing this attempt: alarms and analysis do not stop it.
    bypass: bool = False
    # Why the control request ``last_request`` did not apply ("" when it did), so a caller waiting for
    # it (``--wait``) can tell "done" from "ignored" without parsing the message.
    request_ignored: str = ""
    # How many steps the plan has, as people count them (``controller.core.status``): kept so that
    # a reader without the document (``get``) can still say "step 2 of 4".
    steps: int = 0
    # Transitions to announce, until every notification target had them (``controller.core.announce``).
    outbox: tuple[Announcement, ...] = ()


@dataclass(frozen=True)
class VersionInfo:
    """What the pre-flight checks need from a published version's configuration."""

    version: str
    role: str
    dead_letter_target: str | None = None


class ProvisionedStatus(enum.StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True)
class ProvisionedConfig:
    """One provisioned-concurrency config as read: on a version (``qualifier`` is a number) or an alias."""

    qualifier: str
    requested: int
    allocated: int = 0
    status: ProvisionedStatus = ProvisionedStatus.IN_PROGRESS
    reason: str = ""  # AWS's StatusReason, set when FAILED


@dataclass(frozen=True)
class EventInvokeConfig:
    """An alias's asynchronous-invocation settings; None fields are AWS's defaults (not set)."""

    maximum_retry_attempts: int | None = None
    maximum_event_age_seconds: int | None = None
    on_success: str | None = None
    on_failure: str | None = None


@dataclass(frozen=True)
class Observed:
    """What the shell saw this tick. ``alias`` is None when it was not read this tick.

    The shell re-reads the alias before every write and on a slow drift check, not every tick; when
    it is not read the core trusts the record. ``alias_exists`` is only meaningful when ``alias_read``.
    """

    function_exists: bool = True
    alias_read: bool = False
    alias_exists: bool = True
    alias: AliasRouting | None = None
    other_aliases: Mapping[str, AliasRouting] = field(default_factory=dict)
    # The desired version once ``spec.publish`` was resolved (or ``spec.version``); None = not yet published.
    desired_version: str | None = None
    versions: Mapping[str, VersionInfo] = field(default_factory=dict)
    missing_versions: frozenset[str] = frozenset()
    missing_alarms: frozenset[str] = frozenset()
    alarms_in_alarm: frozenset[str] = frozenset()
    # Watched alarm -> the latest instant it is known to have been in ALARM (it entered or left ALARM
    # then; CloudWatch's clock), from the alarm history or a pushed alarm event: an ALARM that is over
    # by the time of the poll still counts (``controller.core.context.alarms_count_since``).
    alarm_instants: Mapping[str, float] = field(default_factory=dict)
    request: Request | None = None
    # Declared settings, read only on a spec change and on the slow drift check (``settings_read``):
    # function-level reserved concurrency (None: not reserved) and the alias's event invoke config.
    settings_read: bool = False
    reserved_concurrency: int | None = None
    event_invoke: EventInvokeConfig | None = None
    # Provisioned-concurrency configs by qualifier; read while warming and when the core asks.
    provisioned_read: bool = False
    provisioned: Mapping[str, ProvisionedConfig] = field(default_factory=dict)
    # Metric name -> the measurement the shell took this tick (only metrics that were due).
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    # Sequential test name -> the periods the shell read for it this tick (only tests with periods due).
    looks: Mapping[str, SequentialLooks] = field(default_factory=dict)
    # Who may move the function (owner tag, managed marker, config patterns): from cached tags, no call.
    ownership: Ownership = field(default_factory=Ownership)
    # Lifecycle hooks: answers that came back since the last reconcile, and the hooks still running
    # (name -> when it was started). Hooks run beside the reconcile, never inside it, so a hook that
    # never answers cannot hold back an alarm, an abort or the progress deadline.
    hook_answers: tuple[HookAnswer, ...] = ()
    hooks_running: Mapping[str, float] = field(default_factory=dict)
    # ``spec.publish``: the CodeSha256 of ``$LATEST`` when it is not the code the document asks for and
    # no published version has that code either (None: not checked, or it matches).
    latest_code_sha256: str | None = None
    # Notifications: whether the rollout has any (its transitions then go to the record's outbox), and
    # the ids of outbox entries every target had, which the record may forget now.
    announce: bool = False
    announced: frozenset[str] = frozenset()


# ---- actions: what the shell must do, in order ---------------------------------------------------


@dataclass(frozen=True)
class UpdateAlias:
    """Create the alias if ``create`` else update it, sending the RevisionId the shell just read."""

    write: AliasWrite
    create: bool = False
    rollback: bool = False  # served first by the API budget


@dataclass(frozen=True)
class PublishVersion:
    code_sha256: str
    description: str | None = None


@dataclass(frozen=True)
class PutReservedConcurrency:
    value: int


@dataclass(frozen=True)
class PutProvisionedConcurrency:
    """Provision ``value`` on ``qualifier``: always a version, never the weighted alias (AWS refuses that)."""

    qualifier: str
    value: int


@dataclass(frozen=True)
class DeleteProvisionedConcurrency:
    """Release ``qualifier``'s config; the shell treats "there is none" as done."""

    qualifier: str


@dataclass(frozen=True)
class PutEventInvokeConfig:
    """Replace the alias qualifier's async settings with ``config`` (fields not declared go back to defaults)."""

    qualifier: str
    config: EventInvokeConfig


@dataclass(frozen=True)
class RunHook:
    """Start lifecycle hook ``name`` for ``version`` (coming from ``stable``) of the attempt ``attempt``.

    The shell invokes ``hook`` (a Lambda function or a URL, bounded by ``hook.timeout``) with a JSON
    payload describing the rollout, beside the reconcile: it reports the hook as running until the
    answer comes, then hands the answer to the core (``Observed.hook_answers``), which records it.
    """

    name: str
    hook: Hook
    version: str
    stable: str
    attempt: float | None = None


SettingAction = PutReservedConcurrency | PutProvisionedConcurrency | DeleteProvisionedConcurrency | PutEventInvokeConfig
Action = UpdateAlias | PublishVersion | SettingAction | RunHook


@dataclass(frozen=True)
class Event:
    """A transition worth telling people about (Kubernetes Event, log line, metric)."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Status:
    """What ``get`` and ``.status`` show; derived, never stored on its own."""

    phase: Phase
    stable_version: str | None
    canary_version: str | None
    canary_weight: int
    # The step under way counted from 1, ``steps`` once finished, 0 with nothing in flight
    # (``controller.core.status.step_number``): the one numbering every surface shows.
    current_step: int
    steps: int
    step_started_at: float | None
    message: str
    reason: str
    history: tuple[HistoryEntry, ...] = ()
    errors: tuple[str, ...] = ()
    warmup: Warmup | None = None
    # Seconds the current step may last before progressDeadline starts counting (a timed pause's own
    # duration, the warm-up's timeout, 0 for a write step); None when it is unbounded (a pause until
    # promote). Exported so that alerts judge "stuck" exactly as the core does.
    step_allowance: float | None = None
    # The sequential tests of the attempt in flight, as they stand.
    evidence: tuple[SequentialEvidence, ...] = ()


def blank_status(message: str = "") -> Status:
    """A status before anything was decided (Pending, no versions)."""
    return Status(
        phase=Phase.PENDING,
        stable_version=None,
        canary_version=None,
        canary_weight=0,
        current_step=0,
        steps=0,
        step_started_at=None,
        message=message,
        reason="",
    )


def invalid_status(errors: tuple[str, ...], *, previous: Status | None = None) -> Status:
    """An invalid document's status in both modes: held where ``previous`` left it, nothing touched."""
    return dataclasses.replace(
        previous or blank_status(),
        phase=Phase.INVALID,
        reason=Reason.INVALID_SPEC,
        errors=errors,
        message="document invalid: held where it is, nothing in AWS is touched until it is fixed",
    )


@dataclass(frozen=True)
class Warmup:
    """Progress of the new version's provisioned concurrency before its first traffic (``Warming``)."""

    version: str
    requested: int
    allocated: int
    status: str


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    record: Record
    status: Status
    events: tuple[Event, ...] = ()
    # When the core next needs to look, in seconds (e.g. the end of a pause); None = the default tick.
    requeue_after: float | None = None
    # The core needs a fresh alias read to decide (first sight): read it and decide again at once.
    read_alias: bool = False
    # The core needs the provisioned-concurrency configs to decide: read them and decide again at once.
    read_provisioned: bool = False
    # False when ``record`` is what was passed in (or nothing is worth creating): persist nothing.
    record_changed: bool = True
