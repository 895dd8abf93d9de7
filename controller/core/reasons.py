"""The machine-readable ``reason`` of every decision, and the outcomes written to history.

They are part of the user contract (Kubernetes Events, ``.status.reason``, alerts match on them),
so they live in one place and are documented in ``docs/behaviour.md``.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # Invalid: nothing is written to AWS.
    INVALID_SPEC = "InvalidSpec"
    FUNCTION_NOT_FOUND = "FunctionNotFound"
    VERSION_NOT_FOUND = "VersionNotFound"
    INVALID_VERSION = "InvalidVersion"
    ALARM_NOT_FOUND = "AlarmNotFound"
    INCOMPATIBLE_VERSIONS = "IncompatibleVersions"
    STABLE_IS_LATEST = "StableIsLatest"
    NOT_OWNER = "NotOwner"
    CODE_MISMATCH = "CodeMismatch"
    # The rollout's account cannot be reached: its role cannot be assumed (or its records not read).
    CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
    # Pending.
    WAITING_FOR_ALIAS = "WaitingForAlias"
    PUBLISHING_VERSION = "PublishingVersion"
    # Progressing / Promoting.
    ROLLOUT_STARTED = "RolloutStarted"
    WEIGHT_SHIFTED = "WeightShifted"
    BAKING = "Baking"
    SUPERSEDED = "Superseded"
    PREVIEW_READY = "PreviewReady"
    CUTTING_OVER = "CuttingOver"
    PROMOTING = "Promoting"
    PROMOTE_FULL = "PromoteFull"
    RESUMED = "Resumed"
    DRIFT_RESOLVED = "DriftResolved"
    DRIFT_REVERTED = "DriftReverted"
    WARMING = "Warming"
    RUNNING_HOOK = "RunningHook"
    WAITING_FOR_ANALYSIS = "WaitingForAnalysis"
    EMERGENCY_BYPASS = "EmergencyBypass"
    # Paused.
    WAITING_FOR_PROMOTE = "WaitingForPromote"
    PAUSED_BY_SPEC = "PausedBySpec"
    PAUSED_BY_REQUEST = "PausedByRequest"
    ALIAS_DRIFT = "AliasDrift"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    # Healthy.
    PROMOTED = "Promoted"
    ALIAS_CREATED = "AliasCreated"
    ADOPTED = "Adopted"
    UP_TO_DATE = "UpToDate"
    SPEC_REVERTED = "SpecReverted"
    # RolledBack / Degraded.
    ALARM_FIRED = "AlarmFired"
    ABORTED = "Aborted"
    UNDONE = "Undone"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    WARMUP_TIMEOUT = "WarmupTimeout"
    WARMUP_FAILED = "WarmupFailed"
    HOOK_FAILED = "HookFailed"
    ANALYSIS_FAILED = "AnalysisFailed"
    REGRESSION_DETECTED = "RegressionDetected"
    # Orphaned: the document is gone while the new version had traffic; and back again.
    DOCUMENT_REMOVED = "DocumentRemoved"
    MANAGEMENT_RESUMED = "ManagementResumed"
    # Events only.
    REQUEST = "Request"
    HOOK_ANSWER_IGNORED = "HookAnswerIgnored"
    PROMOTED_EARLY = "PromotedEarly"


class Outcome(enum.StrEnum):
    """``HistoryEntry.outcome``: how one rollout attempt ended."""

    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    SUPERSEDED = "Superseded"
    UNDONE = "Undone"
    DEGRADED = "Degraded"
    # Not an end: a control request that applied (promote, retry, pause, resume); reason = the verb.
    REQUESTED = "Requested"
    # Not an end: a hand-made alias change written back (``driftPolicy: Revert``); ``detail`` says
    # what the alias was and what it was set back to.
    DRIFT_REVERTED = "DriftReverted"


#: History outcomes that note something within an attempt rather than end it.
NOT_AN_END = frozenset({Outcome.REQUESTED, Outcome.DRIFT_REVERTED})
