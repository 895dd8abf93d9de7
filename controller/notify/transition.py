"""What a notification is about: one ``Transition`` of one rollout, with an id that survives restarts.

The engine builds a ``Transition`` when a rollout passes a point people care about (a ``Trigger``)
and hands it to the ``Notifier``; nothing here looks at the engine, so the same value can be built
from a live status change or, after a restart, from the durable record.

Exactly once across restarts and leader changes is the engine's job: it records the ids it has seen
announced (``Notifier``'s ``on_delivered``) in the durable record and offers a transition again only
when its id is not there. That works only if the id is the same in every process that ever builds
that transition, so it is a hash of what identifies the transition and of nothing else (no clock, no
process): the rollout key, the attempt, the trigger and a ``discriminator`` for a trigger that can
happen more than once per attempt (the step index of each pause waiting for promotion, the routing
found by a drift check, the hash of an invalid document's errors).

The attempt id is a string chosen by the engine; ``attempt_id`` derives the canonical one from what
the durable record keeps (the version and when its attempt started), so it is the same after a restart.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.core.types import Phase

__all__ = ["Transition", "Trigger", "attempt_id", "rfc3339"]

# Separates the parts hashed into an id; a character no name, version or reason contains, so two
# different tuples can never join into the same string.
_SEPARATOR = "\x1f"


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


def attempt_id(*, version: str | None, started_at: float | None) -> str:
    """``"43@1767225600"``: the version of an attempt and when it started, in whole epoch seconds.

    Both come from the durable record (``Record.canary`` / ``Record.started_at``), so every
    controller that reads the record derives the same attempt id. Without a start time (an invalid
    document, an orphaned rollout) the version alone is the attempt.
    """
    version_part = version or "-"
    return version_part if started_at is None else f"{version_part}@{int(started_at)}"


def rfc3339(seconds: float) -> str:
    """``2026-01-01T12:00:00Z`` (UTC, whole seconds): the form CloudEvents' ``time`` and the docs use."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Transition:
    """One notable moment of one rollout, as every target renders it.

    ``step`` / ``steps`` say "step 2 of 4" (1-based; 0 when the rollout is not on a plan step),
    ``weight`` is the canary's percent of traffic, ``reason`` the core's machine reason
    (``controller.core.reasons.Reason``: AlarmFired, AnalysisFailed, HookFailed,
    ProgressDeadlineExceeded, Aborted...), ``by`` who asked for a manual action, ``at`` epoch seconds.
    ``id`` is derived, never given: see the module docstring.
    """

    namespace: str
    name: str
    function_name: str
    alias: str
    trigger: Trigger
    attempt: str
    at: float
    version: str | None = None
    stable_version: str | None = None
    weight: int = 0
    step: int = 0
    steps: int = 0
    phase: Phase | None = None
    reason: str = ""
    message: str = ""
    by: str = ""
    discriminator: str = ""
    id: str = field(init=False)

    def __post_init__(self) -> None:
        parts = (self.rollout_key, self.attempt, self.trigger.value, self.discriminator)
        digest = hashlib.sha256(_SEPARATOR.join(parts).encode("utf-8")).hexdigest()
        # 128 bits: collisions are out of reach, and the id stays short enough for a tag value.
        object.__setattr__(self, "id", digest[:32])

    @property
    def rollout_key(self) -> str:
        """``namespace/name``, the rollout's identity everywhere in the controller."""
        return f"{self.namespace}/{self.name}"

    @property
    def target(self) -> str:
        """``function:alias``, what the rollout moves."""
        return f"{self.function_name}:{self.alias}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent to webhooks (CloudEvents ``data``) and SNS: camelCase, ``at`` in RFC 3339."""
        return {
            "id": self.id,
            "trigger": self.trigger.value,
            "rollout": {"namespace": self.namespace, "name": self.name},
            "functionName": self.function_name,
            "alias": self.alias,
            "attempt": self.attempt,
            "version": self.version,
            "stableVersion": self.stable_version,
            "weight": self.weight,
            "step": {"index": self.step, "count": self.steps} if self.step else None,
            "phase": self.phase.value if self.phase is not None else None,
            "reason": self.reason,
            "message": self.message,
            "by": self.by,
            "at": rfc3339(self.at),
        }
