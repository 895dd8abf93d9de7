"""Operator requests: promote, promote-full, promote-bypass, abort, retry, pause, resume, undo.

A request is handled once: its id goes into ``record.last_request`` whether or not the verb applies
now, and when it does not the reason is added to the message, so an operator never wonders whether
the controller saw it. Every request that applies leaves a history entry with who asked and when:
abort, undo, promote-full and promote-bypass end an attempt (their own outcome); promote, retry, pause and resume
are logged with outcome ``Requested`` and the verb as reason, so the durable record answers "who
paused this?" long after the message has moved on. Handlers return a ``Decision`` when the request
itself writes the alias (abort, undo, resume from drift) and an updated ``Ctx`` when the ordinary
rules should carry on (promote moves the step pointer, pause sets a flag, ...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from controller.core.context import (
    Ctx,
    describe,
    expected_routing,
    finish,
    is_failed,
    make_write,
    with_failed,
    with_history,
    withdraw_decision,
)
from controller.core.metric_analysis import accept_inconclusive
from controller.core.reasons import Outcome, Reason
from controller.core.types import AliasRouting, Decision, Event, HistoryEntry, Phase, Record, Request, Verb
from controller.document.model import Pause


def drifted(ctx: Ctx) -> bool:
    """The main alias is held for drift, or was read and is neither expected nor the pending "before"."""
    record = ctx.record
    expected = expected_routing(record)
    if ctx.first_sight or expected is None:
        return False
    if not ctx.observed.alias_read:
        return record.phase is Phase.PAUSED and record.reason == Reason.ALIAS_DRIFT
    seen = ctx.seen
    if expected.same_as(seen):
        return False
    pending = record.pending
    if pending is not None and pending.alias == ctx.spec.alias:
        before = pending.previous
        if (before is None and seen is None) or (before is not None and before.same_as(seen)):
            return False
    return True


def restore_target(ctx: Ctx, record: Record) -> AliasRouting:
    """What undoing drift writes back: what the pending write was for, else what the record says."""
    pending = record.pending
    target = pending.routing if pending is not None and pending.alias == ctx.spec.alias else None
    target = target or expected_routing(record)
    assert target is not None  # drift implies an expectation
    return target


def restore(ctx: Ctx, record: Record, *, reason: str, message: str, warning: bool = False) -> Decision:
    """Write the alias back to what the controller expects (drift undone, ``restore_target``). Shared by
    ``resume`` and ``driftPolicy: Revert`` (whose Event is a warning: it overrode a person's change)."""
    write = make_write(ctx, restore_target(ctx, record))
    phase = Phase.HEALTHY if record.canary is None else Phase.PROGRESSING
    new = dataclasses.replace(
        record,
        pending=write.write,
        phase=phase,
        reason=reason,
        message=message,
        step_started_at=ctx.now,
    )
    ctx = ctx.with_record(new, Event(reason, message, warning=warning))
    return finish(ctx, new, actions=(write,), requeue_after=0)


def _requested(record: Record, ctx: Ctx, request: Request) -> Record:
    """``record`` with a history entry saying who asked for ``request`` and when."""
    version = record.canary or ctx.desired or record.stable or "-"
    entry = HistoryEntry(version, Outcome.REQUESTED, request.verb.value, ctx.now, request.by)
    return dataclasses.replace(record, history=with_history(record, entry))


def _ignored(ctx: Ctx, why: str) -> Ctx:
    """The request did not apply: say why in the message, and in the record for a caller that waits on it."""
    return ctx.with_record(dataclasses.replace(ctx.record, request_ignored=why)).note(why)


def _promote(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = ctx.record
    if record.canary is None:
        return _ignored(ctx, "promote ignored: no rollout in progress")
    if record.weight >= 100:
        return _ignored(ctx, "promote ignored: already promoting")
    if record.paused_by_request:
        # An operator who promotes a paused rollout wants it to move; spec.paused still wins.
        record = dataclasses.replace(record, paused_by_request=False)
    if record.phase is Phase.PAUSED and record.reason == Reason.ANALYSIS_INCONCLUSIVE:
        # The person looked at the missing data and accepts it: every metric counts as passed now.
        record = accept_inconclusive(ctx.spec, record, ctx.now)
        record = dataclasses.replace(record, phase=Phase.PROGRESSING, reason=Reason.RESUMED)
        record = _requested(record, ctx, request)
        return ctx.with_record(record).note(f"promote by {request.by or 'operator'}: inconclusive analysis accepted")
    if ctx.blue_green is not None:
        if record.step_index == 0:
            # Not on the preview yet (warming up, or the preview write is in flight): nothing to promote
            # from; cutting over now would skip the warm-up and the preview altogether.
            return _ignored(ctx.with_record(record), "promote ignored: the new version is not on the preview alias yet")
        if record.step_index == 1:
            record = _requested(dataclasses.replace(record, step_index=2, step_started_at=ctx.now), ctx, request)
            return ctx.with_record(record).note(f"promote by {request.by or 'operator'}: cutting over")
        return _ignored(ctx.with_record(record), "promote ignored: cut-over already under way")
    index = record.step_index
    if index < len(ctx.plan) and isinstance(ctx.plan[index], Pause):
        record = dataclasses.replace(record, step_index=index + 1, step_started_at=ctx.now)
        record = _requested(record, ctx, request)
        return ctx.with_record(record).note(f"promote by {request.by or 'operator'}: pause skipped")
    return _ignored(ctx.with_record(record), "promote ignored: no pause to skip")


def _emergency_start(ctx: Ctx) -> Record:
    """The desired version's attempt, started for a bypass: its failed mark cleared, at the final step.

    The emergency this is for: the version was rolled back (an alarm that fires because of the OLD
    version, say) and the fix must go out now.
    """
    record = ctx.record
    assert ctx.desired is not None
    return dataclasses.replace(
        record,
        spec_hash=ctx.spec_hash,
        canary=ctx.desired,
        weight=0,
        step_index=0,
        started_at=ctx.now,
        step_started_at=ctx.now,
        phase=Phase.PROGRESSING,
        failed=tuple(f for f in record.failed if f.version != ctx.desired),
        hooks=(),
        metrics=(),
        sequential=(),
        weight_at=None,
    )


def _promote_full(ctx: Ctx, request: Request, *, bypass: bool = False) -> Ctx | Decision:
    record = ctx.record
    verb = request.verb.value
    if bypass and record.canary is None and ctx.desired not in (None, record.stable) and record.stable is not None:
        record = _emergency_start(ctx)
        ctx = ctx.with_record(record)
    if record.canary is None:
        return _ignored(ctx, f"{verb} ignored: no rollout in progress")
    if record.weight >= 100 and (not bypass or record.bypass):
        return _ignored(ctx, f"{verb} ignored: already promoting")
    final = 2 if ctx.blue_green is not None else len(ctx.plan)
    reason = Reason.EMERGENCY_BYPASS if bypass else Reason.PROMOTE_FULL
    entry = HistoryEntry(record.canary, Outcome.PROMOTED, reason, ctx.now, request.by)
    record = dataclasses.replace(
        record,
        step_index=max(final, record.step_index),
        step_started_at=ctx.now,
        paused_by_request=False,
        history=with_history(record, entry),
        reason=reason,
        bypass=bypass or record.bypass,
    )
    who = request.by or "operator"
    if bypass:
        message = (
            f"emergency bypass by {who}: version {record.canary} promoted to 100% now; "
            "watched alarms, metric analysis and hooks are not consulted for this attempt"
        )
        return ctx.with_record(record, Event(Reason.EMERGENCY_BYPASS, message, warning=True)).note(message)
    event = Event(Reason.PROMOTE_FULL, f"promote-full of version {record.canary} by {who}")
    return ctx.with_record(record, event)


def _promote_bypass(ctx: Ctx, request: Request) -> Ctx | Decision:
    return _promote_full(ctx, request, bypass=True)


def _abort(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = ctx.record
    if record.canary is None:
        return _ignored(ctx, "abort ignored: no rollout in progress")
    message = (
        f"aborted by {request.by or 'operator'}: version {record.canary} rolled back to {record.stable}; "
        "`retry` or a spec change starts it again"
    )
    return withdraw_decision(
        ctx,
        phase=Phase.ROLLED_BACK,
        reason=Reason.ABORTED,
        message=message,
        outcome=Outcome.ABORTED,
        fail=True,
        by=request.by,
    )


def _retry(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = ctx.record
    failed = tuple(f for f in record.failed if f.version != ctx.desired)
    if failed == record.failed:
        return _ignored(ctx, f"retry ignored: version {ctx.desired} has not failed")
    record = _requested(dataclasses.replace(record, failed=failed), ctx, request)
    return ctx.with_record(record).note(f"retry of version {ctx.desired} by {request.by or 'operator'}")


def _pause(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = _requested(dataclasses.replace(ctx.record, paused_by_request=True), ctx, request)
    return ctx.with_record(record).note(f"paused by {request.by or 'operator'}")


def _resume(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = dataclasses.replace(ctx.record, paused_by_request=False)
    if drifted(ctx):
        record = _requested(record, ctx, request)
        # ``resume`` hands the alias back to the controller: while an alarm counts against the attempt,
        # that is the rollback, never the canary's weight written back.
        from controller.core.decide import alarm_rollback  # the rule table imports this module

        rolled_back = alarm_rollback(ctx.with_record(record))
        if isinstance(rolled_back, Decision):
            return rolled_back
        # Re-assert the controller's state.
        target = restore_target(ctx, record)
        message = f"resumed by {request.by or 'operator'}: alias {ctx.spec.alias} restored to {describe(target)}"
        return restore(ctx, record, reason=Reason.RESUMED, message=message)
    if not ctx.record.paused_by_request and not ctx.spec.paused:
        return _ignored(ctx.with_record(record), "resume ignored: not paused")
    record = _requested(record, ctx, request)
    if ctx.spec.paused:
        return ctx.with_record(record).note("resume noted, but spec.paused is still true")
    return ctx.with_record(record).note(f"resumed by {request.by or 'operator'}")


def _undo(ctx: Ctx, request: Request) -> Ctx | Decision:
    record = ctx.record
    if record.canary is not None:
        return _ignored(ctx, "undo ignored: a rollout is in progress (use abort)")
    if record.previous_stable is None or record.stable is None:
        return _ignored(ctx, "undo ignored: no previous version to go back to")
    undone, back = record.stable, record.previous_stable
    failed = is_failed(record, back, ctx.spec_hash)
    if failed is not None:
        # A failed version gets no traffic without `retry` or a spec change, not even by undo.
        return _ignored(ctx, f"undo ignored: version {back} failed ({failed.reason}); `retry` it first")
    message = (
        f"undone by {request.by or 'operator'}: alias {ctx.spec.alias} back on version {back}; "
        f"version {undone} will not be deployed again until `retry` or a spec change"
    )
    write = make_write(ctx, AliasRouting(back), rollback=True)
    new = dataclasses.replace(
        record,
        stable=back,
        previous_stable=None,
        pending=write.write,
        step_started_at=ctx.now,
        phase=Phase.ROLLED_BACK,
        reason=Reason.UNDONE,
        message=message,
        history=with_history(record, HistoryEntry(undone, Outcome.UNDONE, Reason.UNDONE, ctx.now, request.by)),
        failed=with_failed(record, undone, ctx.spec_hash, Reason.UNDONE),
    )
    ctx = ctx.with_record(new, Event(Reason.UNDONE, message, warning=True))
    return finish(ctx, new, actions=(write,), requeue_after=0)


HANDLERS: dict[Verb, Callable[[Ctx, Request], Ctx | Decision]] = {
    Verb.PROMOTE: _promote,
    Verb.PROMOTE_FULL: _promote_full,
    Verb.PROMOTE_BYPASS: _promote_bypass,
    Verb.ABORT: _abort,
    Verb.RETRY: _retry,
    Verb.PAUSE: _pause,
    Verb.RESUME: _resume,
    Verb.UNDO: _undo,
}


def handle_request(ctx: Ctx) -> Ctx | Decision:
    """Rule: apply a new control request once, recording its id whatever happens."""
    request = ctx.observed.request
    if request is None or ctx.first_sight or request.id == ctx.record.last_request:
        # On first sight there is no rollout to act on; the request is handled on the next decide.
        return ctx
    ctx = ctx.with_record(dataclasses.replace(ctx.record, last_request=request.id, request_ignored=""))
    ctx = dataclasses.replace(
        ctx, events=(*ctx.events, Event(Reason.REQUEST, f"{request.verb} requested by {request.by or 'operator'}"))
    )
    return HANDLERS[request.verb](ctx, request)
