"""Transitions people are told about, kept in the durable record until they are delivered (the outbox).

A notification must go out exactly once per transition, also when the controller is killed between
the transition and the send, or a new leader takes over. So the transition is written down in the
same record write that makes it (``Record.outbox``, write-ahead, like a pending alias write): whoever
reconciles next finds it there and hands it to the notifier, which sends it beside the engine, never
inside a reconcile. Once every target had it (sent, or given up on), the shell says so
(``Observed.announced``) and the next decide takes it out of the record. A controller killed after a
receiver's answer and before that removal sends it again: the only duplicates, and receivers of the
CloudEvents webhook can drop them by the event's ``id``, which is the same in every process
(``transition_id``).

Which transitions (``Trigger``): a rollout started, waiting for promotion (an indefinite pause, or
blue/green's preview ready), promoted, rolled back or degraded (with the reason: alarm, analysis,
hook, deadline, abort), analysis inconclusive, drift detected; and, announced by the shell from the
status alone because nothing is written for them, invalid documents and orphaned rollouts. Only when
notifications are configured for the rollout (``Observed.announce``): otherwise the record never
carries an outbox and no write is added. Pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from controller.core.reasons import Reason
from controller.core.types import Announcement, Decision, Event, Phase, Record, Trigger

# An entry's message is cut to this: the record lives in tags, and the message only illustrates.
MESSAGE_LIMIT = 240
# Never more than this many waiting: a target down for long must not grow the record without end.
OUTBOX_LIMIT = 6
# Separates the parts hashed into an id; no name, version or reason contains it.
_SEPARATOR = "\x1f"

_ROLLBACK_REASONS = frozenset(
    {
        Reason.ALARM_FIRED,
        Reason.HOOK_FAILED,
        Reason.ANALYSIS_FAILED,
        Reason.ABORTED,
        Reason.PROGRESS_DEADLINE_EXCEEDED,
        Reason.WARMUP_TIMEOUT,
        Reason.WARMUP_FAILED,
    }
)


def attempt_id(*, version: str | None, started_at: float | None) -> str:
    """``"43@1767225600"``: the version of an attempt and when it started, in whole epoch seconds.

    Both are in the durable record, so every controller that reads it derives the same attempt id.
    Without a start time (an invalid document, an orphaned rollout) the version alone is the attempt.
    """
    version_part = version or "-"
    return version_part if started_at is None else f"{version_part}@{int(started_at)}"


def transition_id(key: str, *, attempt: str, trigger: str, discriminator: str = "") -> str:
    """A transition's id: the same in every process that ever builds it (no clock, no process in it)."""
    digest = hashlib.sha256(_SEPARATOR.join((key, attempt, trigger, discriminator)).encode("utf-8")).hexdigest()
    return digest[:32]  # 128 bits: collisions are out of reach, and short enough for the record


def _trigger(event: Event, phase: Phase) -> Trigger | None:
    if event.reason == Reason.ROLLOUT_STARTED:
        return Trigger.STARTED
    if event.reason == Reason.PROMOTED:
        return Trigger.PROMOTED
    if event.reason == Reason.ALIAS_DRIFT:
        return Trigger.DRIFT_DETECTED
    if event.reason == Reason.WAITING_FOR_PROMOTE and phase is Phase.PAUSED:
        return Trigger.WAITING_FOR_PROMOTION
    if event.reason == Reason.ANALYSIS_INCONCLUSIVE:
        return Trigger.ANALYSIS_INCONCLUSIVE
    if event.reason in _ROLLBACK_REASONS or (phase in (Phase.ROLLED_BACK, Phase.DEGRADED) and event.warning):
        return Trigger.ROLLED_BACK
    return None


def announcements(key: str, before: Record, decision: Decision, *, now: float) -> tuple[Announcement, ...]:
    """The transitions ``decision`` makes, from its events (the core posts one on each transition)."""
    record, status = decision.record, decision.status
    found: dict[str, Announcement] = {}
    for event in decision.events:
        trigger = _trigger(event, status.phase)
        if trigger is None:
            continue
        # A rollback ends the attempt: the attempt it ended is the one before the decision.
        owner = before if trigger is Trigger.ROLLED_BACK else record
        attempt = attempt_id(version=owner.canary, started_at=owner.started_at)
        discriminator = {
            Trigger.WAITING_FOR_PROMOTION: str(record.step_index),
            Trigger.ANALYSIS_INCONCLUSIVE: str(record.step_index),
            # Each occurrence of drift is its own transition: what was found is in its message.
            Trigger.DRIFT_DETECTED: hashlib.sha256(event.message.encode("utf-8")).hexdigest()[:8],
        }.get(trigger, "")
        ident = transition_id(key, attempt=attempt, trigger=trigger.value, discriminator=discriminator)
        last = record.history[-1] if record.history else None
        by = last.by if last is not None and last.at == now else ""
        found.setdefault(
            ident,
            Announcement(
                id=ident,
                trigger=trigger,
                attempt=attempt,
                at=now,
                version=owner.canary or record.stable,
                stable=record.stable if trigger is not Trigger.ROLLED_BACK else before.stable,
                weight=before.weight if trigger is Trigger.ROLLED_BACK else record.weight,
                step=status.current_step,
                steps=status.steps,
                phase=status.phase,
                reason=event.reason,
                message=event.message[:MESSAGE_LIMIT],
                by=by,
                discriminator=discriminator,
            ),
        )
    return tuple(found.values())


def with_announcements(key: str, before: Record, decision: Decision, *, now: float, announce: bool) -> Decision:
    """``decision`` with its transitions added to the record's outbox (when the rollout has notifications).

    Nothing is added to an Invalid answer (bad input writes nothing, not even the record: the shell
    announces it from the status), nor where no record exists yet (an alias already split by someone
    else at first sight). The outbox keeps the newest entries when it is full.
    """
    if not announce or decision.status.phase in (Phase.INVALID, Phase.PENDING) or decision.record.stable is None:
        # Nothing to write it to: bad input writes nothing, and a rollout not started has no record yet.
        return decision
    known = {entry.id for entry in decision.record.outbox}
    new = tuple(a for a in announcements(key, before, decision, now=now) if a.id not in known)
    if not new:
        return decision
    outbox = (*decision.record.outbox, *new)[-OUTBOX_LIMIT:]
    return dataclasses.replace(
        decision, record=dataclasses.replace(decision.record, outbox=outbox), record_changed=True
    )


def without_announced(record: Record, announced: Iterable[str]) -> Record:
    """``record`` without the outbox entries every target had (the shell says which)."""
    done = set(announced)
    if not done or not record.outbox:
        return record
    kept = tuple(entry for entry in record.outbox if entry.id not in done)
    return record if kept == record.outbox else dataclasses.replace(record, outbox=kept)


__all__ = [
    "OUTBOX_LIMIT",
    "announcements",
    "attempt_id",
    "transition_id",
    "with_announcements",
    "without_announced",
]
