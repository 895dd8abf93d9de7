"""What a notification is about: one ``Transition`` of one rollout, with an id that survives restarts.

The engine builds a ``Transition`` when a rollout passes a point people care about (a ``Trigger``)
and hands it to the ``Notifier``; nothing here looks at the engine, so the same value can be built
from a live status change or, after a restart, from the durable record's outbox.

Exactly once across restarts and leader changes is the engine's job: the transition waits in the
durable record's outbox until every target is done with it (``controller.core.announce``), and
whatever process finds it there offers it. That works only if the id is the same in every process
that ever builds that transition, so it is a hash of what identifies the transition and of nothing
else (no clock, no process; ``controller.core.announce.transition_id``): the rollout key, the
attempt, the trigger and a ``discriminator`` for a trigger that can happen more than once per
attempt (the step index of each pause waiting for promotion, the routing found by a drift check,
the hash of an invalid document's errors).

The attempt id is a string chosen by the engine; ``attempt_id`` derives the canonical one from what
the durable record keeps (the version and when its attempt started), so it is the same after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.core.announce import attempt_id, transition_id
from controller.core.types import Announcement, Phase, Trigger

__all__ = ["Transition", "Trigger", "attempt_id", "rfc3339"]


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
        ident = transition_id(
            self.rollout_key, attempt=self.attempt, trigger=self.trigger.value, discriminator=self.discriminator
        )
        object.__setattr__(self, "id", ident)

    @classmethod
    def announced(
        cls, announcement: Announcement, *, namespace: str, name: str, function_name: str, alias: str
    ) -> Transition:
        """The transition an outbox entry of the durable record announces (same id in every process)."""
        return cls(
            namespace=namespace,
            name=name,
            function_name=function_name,
            alias=alias,
            trigger=announcement.trigger,
            attempt=announcement.attempt,
            at=announcement.at,
            version=announcement.version,
            stable_version=announcement.stable,
            weight=announcement.weight,
            step=announcement.step,
            steps=announcement.steps,
            phase=announcement.phase,
            reason=announcement.reason,
            message=announcement.message,
            by=announcement.by,
            discriminator=announcement.discriminator,
        )

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
