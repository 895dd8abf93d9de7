"""``decide(spec, record, observed, now) -> Decision``: the whole rollout logic, pure.

It reads as a list of small rules tried in order (``RULES``). Each takes the context and returns
either a ``Decision`` (it has the last word) or a context for the next rule, possibly with an updated
working record: confirming a write that happened, starting a rollout, moving the step pointer for a
``promote``. The order *is* the policy, so read it top to bottom:

1. nothing can be decided about a function that does not exist, nor by a rollout that may not move it
   (ownership: Invalid ``NotOwner``, nothing written), nor without the alias on first sight;
2. a write that already happened is confirmed, hook answers are recorded, a finished final write
   becomes Healthy;
3. operator requests are applied once;
4. drift (someone moved the alias) holds everything but abort/resume, or is reverted when the spec's
   ``driftPolicy`` says so;
5. safety before progress: alarms, failed hooks, failed metrics and a proven regression
   (``controller.core.sequential_analysis``), then the progress deadline, roll back;
6. an unconfirmed write-ahead is re-issued before anything new is written;
7. bad input (missing version/alarm, incompatible versions) is Invalid and writes nothing;
8. spec edits: publish first, revert, supersede, re-plan;
9. failed versions stay out; first sight; start; finished; paused; warm the new version's
   provisioned concurrency before its first traffic; run the lifecycle hook that is due
   (``controller.core.lifecycle``); advance one step.

Declared settings (reserved concurrency, async config, provisioned concurrency per version) are
not a step of the rollout: ``with_settings`` appends the writes that make them hold to whatever the
rules decided (see ``controller.core.concurrency``).

Write-ahead: every alias write is also put in ``record.pending`` (with what the alias held before).
The shell persists that record, makes the write, then persists ``confirm(record, now)``. Whatever
instant the process dies at, the next decide sees the alias either as it was (re-issue), as pending
(confirm) or as something else (drift): nothing is skipped and no pause is shortened, because pauses
are measured from confirmation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from controller.core.announce import with_announcements, without_announced
from controller.core.bluegreen import advance_blue_green
from controller.core.concurrency import warm_up, with_settings
from controller.core.context import (
    Ctx,
    alarms_count_since,
    alias_state,
    creates,
    current_pause,
    describe,
    expected_routing,
    finish,
    is_failed,
    make_write,
    with_history,
    withdraw,
    withdraw_decision,
)
from controller.core.lifecycle import AFTER_ALLOW_TRAFFIC, fold_answers, hook_failed, passed, run_hooks
from controller.core.metric_analysis import analysis_inconclusive, hold_for_analysis, metric_analysis, wake_after
from controller.core.ownership import refusal
from controller.core.plan import build_plan
from controller.core.reasons import Outcome, Reason
from controller.core.requests import drifted, handle_request, restore, restore_target
from controller.core.sequential_analysis import ended_early, proven_no_regression, sequential_analysis
from controller.core.sequential_analysis import wake_after as sequential_wake_after
from controller.core.spec_hash import spec_hash
from controller.core.types import (
    AliasRouting,
    Decision,
    Event,
    HistoryEntry,
    Observed,
    Phase,
    PublishVersion,
    Record,
    UpdateAlias,
)
from controller.document.model import BlueGreenStrategy, Pause, RolloutSpec, SetWeight, Step
from controller.document.names import LATEST

Rule = Callable[[Ctx], Ctx | Decision]
# Reasons of a "finish now" request, kept on the record through the final write.
_FINISH_NOW = (Reason.PROMOTE_FULL, Reason.EMERGENCY_BYPASS)
# Woken this much after a progress deadline, so the rule that compares "overdue > deadline" sees it passed.
_DEADLINE_MARGIN = 0.001


def confirm(record: Record, now: float) -> Record:
    """The record once its pending alias write is known to be made (called by the shell after the write).

    The current step starts now: measuring pauses from confirmation means a crash between the write
    and this call can only lengthen a pause, never shorten it.
    """
    # A canary weight counts from here: its metric measurements only cover periods after it.
    weight_at = now if record.canary is not None else record.weight_at
    return dataclasses.replace(record, pending=None, step_started_at=now, weight_at=weight_at)


# ---- 1. preconditions ----------------------------------------------------------------------------


def function_missing(ctx: Ctx) -> Ctx | Decision:
    if ctx.observed.function_exists:
        return ctx
    return _invalid(ctx, Reason.FUNCTION_NOT_FOUND, f"function {ctx.spec.function_name} does not exist")


def not_owner(ctx: Ctx) -> Ctx | Decision:
    # Before anything that could write, even a rollback or a request: a rollout that may not move
    # this function has no say over it at all (``controller.core.ownership``).
    spec = ctx.spec
    why = refusal(namespace=spec.namespace, function=spec.function_name, facts=ctx.observed.ownership)
    return ctx if why is None else _invalid(ctx, Reason.NOT_OWNER, why)


def alias_needed(ctx: Ctx) -> Ctx | Decision:
    # On first sight there is no record to trust: the alias must be read before anything is decided.
    if not ctx.first_sight or ctx.observed.alias_read:
        return ctx
    message = f"reading alias {ctx.spec.alias}"
    return finish(ctx, ctx.record, show=(Phase.PENDING, Reason.WAITING_FOR_ALIAS, message), read_alias=True)


# ---- 2. settle what already happened ------------------------------------------------------------


def confirm_pending(ctx: Ctx) -> Ctx | Decision:
    pending = ctx.record.pending
    if pending is None:
        return ctx
    read, current = alias_state(ctx, pending.alias)
    if read and pending.routing.same_as(current):
        return ctx.with_record(confirm(ctx.record, ctx.now))
    return ctx


def finish_promotion(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if record.pending is not None or record.canary is None or record.weight < 100:
        return ctx
    if not passed(ctx.spec, record, AFTER_ALLOW_TRAFFIC):
        return ctx  # 100% of traffic, but not promoted until afterAllowTraffic said yes
    version = record.canary
    message = f"version {version} promoted: alias {ctx.spec.alias} sends it 100% of traffic"
    history = record.history
    last = history[-1] if history else None
    # promote-full already wrote its own entry (with who asked); do not write a second one.
    already = (
        last is not None
        and last.version == version
        and last.outcome == Outcome.PROMOTED
        and last.at >= (record.started_at or 0.0)
    )
    if not already:
        history = with_history(record, HistoryEntry(version, Outcome.PROMOTED, Reason.PROMOTED, ctx.now))
    new = dataclasses.replace(
        record,
        stable=version,
        previous_stable=record.stable,
        canary=None,
        weight=0,
        step_index=0,
        started_at=None,
        phase=Phase.HEALTHY,
        reason=Reason.PROMOTED,
        message=message,
        history=history,
        hooks=(),
        weight_at=None,
        metrics=(),
        sequential=(),
        bypass=False,
    )
    return ctx.with_record(new, Event(Reason.PROMOTED, message))


def resume_orphaned(ctx: Ctx) -> Ctx | Decision:
    """The document of an orphaned rollout is back: the rollout is managed again from where it stood.

    The alias may have been moved while nobody managed it, so it is read first (then ``drift``
    judges it). The current step's clock restarts, as after a pause: time without a manager counts
    neither as bake time nor against the progress deadline (it can only lengthen a step).
    """
    record = ctx.record
    if record.phase is not Phase.ORPHANED:
        return ctx
    if not ctx.observed.alias_read:
        return finish(ctx, record, read_alias=True)
    phase = Phase.HEALTHY if record.canary is None else Phase.PROGRESSING
    message = f"document found again: managing {ctx.spec.alias} again from {describe(expected_routing(record))}"
    started = ctx.now if record.pending is None else record.step_started_at
    new = dataclasses.replace(
        record, phase=phase, reason=Reason.MANAGEMENT_RESUMED, message=message, step_started_at=started
    )
    return ctx.with_record(new, Event(Reason.MANAGEMENT_RESUMED, message))


def orphan(record: Record, *, alias: str, why: str) -> Record | None:
    """The record of a rollout that stops being managed (its document is gone), or None to let it go quietly.

    Only a rollout in flight is left in a state nobody should leave unattended: the new version has
    traffic (or a write is pending) and no one will finish or roll it back. That must be loud: the
    record says Orphaned with the alias as it stands, so ``get``, the metrics and an alert show it.
    A rollout with nothing in flight stops quietly, as documented. Pure: the shell persists it.
    """
    if record.canary is None and record.pending is None:
        return None
    if record.phase is Phase.ORPHANED:
        return record
    where = describe(expected_routing(record))
    message = (
        f"{why}: no longer managed while alias {alias} is at {where}; nothing moves it until the "
        "document is back (restore it to continue, or fix the alias by hand)"
    )
    return dataclasses.replace(record, phase=Phase.ORPHANED, reason=Reason.DOCUMENT_REMOVED, message=message)


# ---- 4. drift ------------------------------------------------------------------------------------


def drift(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    held = record.phase is Phase.PAUSED and record.reason == Reason.ALIAS_DRIFT
    if not drifted(ctx):
        if held:
            # The alias came back to what we expect: carry on as if nothing happened.
            phase = Phase.HEALTHY if record.canary is None else Phase.PROGRESSING
            message = f"alias {ctx.spec.alias} is back to {describe(expected_routing(record))}"
            new = dataclasses.replace(record, phase=phase, reason=Reason.DRIFT_RESOLVED, message=message)
            return ctx.with_record(new, Event(Reason.DRIFT_RESOLVED, message))
        return ctx
    if ctx.spec.drift_policy == "Revert":
        # Reverting writes the canary's weight back: an alarm that counts against the attempt rolls it
        # back instead (that write overrides the hand change too), as it would at the next rule.
        rolled_back = alarm_rollback(ctx)
        return rolled_back if isinstance(rolled_back, Decision) else _revert(ctx, held=held)
    if held and not ctx.observed.alias_read:
        return finish(ctx, record)
    message = (
        f"alias {ctx.spec.alias} was changed outside the controller: it is {describe(ctx.seen)}, "
        f"expected {describe(expected_routing(record))}; holding: `resume` restores it, `abort` rolls back"
    )
    new = dataclasses.replace(record, phase=Phase.PAUSED, reason=Reason.ALIAS_DRIFT, message=message)
    events = () if held and record.message == message else (Event(Reason.ALIAS_DRIFT, message, warning=True),)
    return finish(ctx.with_record(new, *events), new)


def _revert(ctx: Ctx, *, held: bool) -> Decision:
    # driftPolicy Revert: report the drift, then take the `resume` path without a request. Each
    # occurrence is reverted once: the write makes the alias expected again, and only a new hand
    # change (a new occurrence) makes it drift again. It leaves a trace: a history entry saying what
    # the alias was and what it was set back to, and the reason DriftReverted until the next step.
    record = ctx.record
    if not ctx.observed.alias_read:
        return finish(ctx, record, read_alias=True)  # held under Hold before the policy changed
    message = (
        f"alias {ctx.spec.alias} was changed outside the controller: it was {describe(ctx.seen)}, "
        f"expected {describe(expected_routing(record))}; reverted (driftPolicy Revert)"
    )
    detail = f"alias {ctx.spec.alias} was {describe(ctx.seen)}; set back to {describe(restore_target(ctx, record))}"
    version = record.canary or record.stable or "-"
    entry = HistoryEntry(version, Outcome.DRIFT_REVERTED, Reason.DRIFT_REVERTED, ctx.now, detail=detail)
    record = dataclasses.replace(record, history=with_history(record, entry))
    ctx = ctx.with_record(record, Event(Reason.ALIAS_DRIFT, message, warning=True))
    return restore(ctx, record, reason=Reason.DRIFT_REVERTED, message=message, warning=True)


# ---- 5. safety -----------------------------------------------------------------------------------


def alarm_rollback(ctx: Ctx) -> Ctx | Decision:
    """A watched alarm in ALARM now, or at any instant since the attempt started, rolls it back.

    The second half is "no missed transition": an alarm that went to ALARM and back to OK between two
    polls is known from the alarm history or a pushed event (``Observed.alarm_instants``), and counts
    from the attempt's start on (``alarms_count_since``), never from an earlier attempt's.
    """
    record = ctx.record
    if record.canary is None or record.bypass:
        return ctx
    watched = set(ctx.spec.analysis.alarms)
    firing = sorted(watched & ctx.observed.alarms_in_alarm)
    since = alarms_count_since(record)
    instants = ctx.observed.alarm_instants
    earlier = sorted(
        name for name in watched - set(firing) if since is not None and name in instants and instants[name] >= since
    )
    if not firing and not earlier:
        return ctx
    said = [f"alarm {', '.join(firing)} in ALARM"] if firing else []
    if earlier:
        said.append(f"alarm {', '.join(earlier)} was in ALARM during this rollout (OK again since)")
    message = (
        f"{'; '.join(said)}: version {record.canary} rolled back to {record.stable}; "
        "`retry` or a spec change starts it again"
    )
    return _withdraw(ctx, Phase.ROLLED_BACK, Reason.ALARM_FIRED, message, Outcome.ROLLED_BACK, fail=True)


def _paused(ctx: Ctx) -> bool:
    record = ctx.record
    return ctx.spec.paused or record.paused_by_request or record.phase is Phase.PAUSED


def progress_deadline(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    deadline = ctx.spec.progress_deadline
    if deadline is None or record.canary is None or record.step_started_at is None or _paused(ctx):
        return ctx
    allowed = current_pause(ctx)
    if allowed is None:  # an indefinite pause waits for a person, not for progress
        return ctx
    overdue = ctx.now - record.step_started_at - allowed
    if overdue <= deadline:
        return ctx
    message = (
        f"no progress for {overdue:.0f}s (progressDeadline {deadline:.0f}s): version {record.canary} rolled "
        f"back to {record.stable}; `retry` or a spec change starts it again"
    )
    return _withdraw(ctx, Phase.DEGRADED, Reason.PROGRESS_DEADLINE_EXCEEDED, message, Outcome.DEGRADED, fail=True)


def _withdraw(ctx: Ctx, phase: Phase, reason: Reason, message: str, outcome: Outcome, *, fail: bool) -> Decision:
    return withdraw_decision(ctx, phase=phase, reason=reason, message=message, outcome=outcome, fail=fail)


# ---- 6. write-ahead ------------------------------------------------------------------------------


def reissue_pending(ctx: Ctx) -> Ctx | Decision:
    # Reached only when the pending write is neither confirmed nor contradicted (that is drift): the
    # alias still holds what it held before, or was not read. Same write again; AWS writes are
    # idempotent and the RevisionId guards against a concurrent change.
    record = ctx.record
    pending = record.pending
    if pending is None:
        return ctx
    read = ctx.observed.alias_read
    create = creates(ctx, pending.alias)
    rollback = record.canary is None and record.phase in (Phase.ROLLED_BACK, Phase.DEGRADED)
    action = UpdateAlias(pending, create=create, rollback=rollback)
    return finish(ctx, record, actions=(action,), requeue_after=0, read_alias=not read)


# ---- 7. bad input --------------------------------------------------------------------------------


def preflight(ctx: Ctx) -> Ctx | Decision:
    spec, observed = ctx.spec, ctx.observed
    if observed.missing_versions:
        names = ", ".join(sorted(observed.missing_versions))
        return _invalid(ctx, Reason.VERSION_NOT_FOUND, f"version {names} of {spec.function_name} does not exist")
    if observed.missing_alarms:
        names = ", ".join(sorted(observed.missing_alarms))
        return _invalid(ctx, Reason.ALARM_NOT_FOUND, f"alarm {names} does not exist")
    desired = ctx.desired
    if desired is None and spec.publish is None:
        return _invalid(ctx, Reason.INVALID_VERSION, "neither version nor publish is set")
    if desired is not None and not desired.isdigit():
        return _invalid(ctx, Reason.INVALID_VERSION, f"version {desired!r} is not a published version number")
    stable = ctx.record.stable if not ctx.first_sight else (ctx.seen.primary if ctx.seen else None)
    if stable == LATEST:
        return _invalid(
            ctx,
            Reason.STABLE_IS_LATEST,
            f"alias {spec.alias} points at $LATEST, which cannot be weight-routed; point it at a published version",
        )
    if desired is not None and stable is not None and desired != stable:
        old, new = observed.versions.get(stable), observed.versions.get(desired)
        if old is not None and new is not None:
            if old.role != new.role:
                return _invalid(
                    ctx,
                    Reason.INCOMPATIBLE_VERSIONS,
                    f"versions {stable} and {desired} have different execution roles ({old.role} vs {new.role})",
                )
            if old.dead_letter_target != new.dead_letter_target:
                return _invalid(
                    ctx,
                    Reason.INCOMPATIBLE_VERSIONS,
                    f"versions {stable} and {desired} have different dead-letter targets "
                    f"({old.dead_letter_target} vs {new.dead_letter_target})",
                )
    return ctx


def _invalid(ctx: Ctx, reason: Reason, message: str) -> Decision:
    # The record is left exactly as it was: an Invalid spec changes nothing, in AWS or in the record.
    return finish(ctx, ctx.original, show=(Phase.INVALID, reason, message))


# ---- 8. spec edits -------------------------------------------------------------------------------


def publish(ctx: Ctx) -> Ctx | Decision:
    spec = ctx.spec
    if spec.publish is None or ctx.observed.desired_version is not None:
        return ctx
    latest = ctx.observed.latest_code_sha256
    if latest is not None:
        # AWS would refuse the publish (the hash guards it), again and again: say why once, touch nothing.
        return _invalid(
            ctx,
            Reason.CODE_MISMATCH,
            f"$LATEST of {spec.function_name} has code {latest}, not the {spec.publish.code_sha256} that "
            "spec.publish.codeSha256 asks for, and no published version has that code: update the function's "
            "code or the document",
        )
    action = PublishVersion(spec.publish.code_sha256, spec.publish.description)
    message = f"publishing $LATEST (code {spec.publish.code_sha256[:12]}) as a new version"
    # requeue at once: the shell resolves the new version number on its next observation.
    show = (Phase.PENDING, Reason.PUBLISHING_VERSION, message)
    return finish(ctx, ctx.original, actions=(action,), show=show, requeue_after=0)


def spec_reverted(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if record.canary is None or ctx.desired != record.stable:
        return ctx
    message = f"spec is back on version {record.stable}: version {record.canary} withdrawn"
    return _withdraw(ctx, Phase.HEALTHY, Reason.SPEC_REVERTED, message, Outcome.ABORTED, fail=False)


def superseded(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if record.canary is None or ctx.desired == record.canary:
        return ctx
    message = f"version {record.canary} superseded by {ctx.desired}: withdrawn before the new rollout starts"
    new, write = withdraw(
        ctx, phase=Phase.PROGRESSING, reason=Reason.SUPERSEDED, message=message, outcome=Outcome.SUPERSEDED, fail=False
    )
    ctx = ctx.with_record(new, Event(Reason.SUPERSEDED, message))
    if write is None:
        return ctx  # nothing on the alias to withdraw: the new rollout starts in this decide
    return finish(ctx, new, actions=(write,), requeue_after=0)


def rebase(plan: tuple[Step, ...], weight: int) -> int:
    """Where a rollout at ``weight`` continues in a (new) plan: at the pauses before the first higher
    weight, so that the new plan's bake time is served in full and no weight goes down."""
    if weight >= 100:
        return len(plan)
    target = next(
        (i for i, s in enumerate(plan) if isinstance(s, SetWeight) and s.weight > weight),
        len(plan),
    )
    while target > 0 and isinstance(plan[target - 1], Pause):
        target -= 1
    return target


def spec_changed(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if ctx.first_sight or record.spec_hash == ctx.spec_hash:
        return ctx
    # Failure marks are per spec hash: a changed spec gets a fresh chance.
    failed = tuple(f for f in record.failed if f.spec_hash == ctx.spec_hash)
    # Hook answers and measurements were for the old spec: what is still ahead is judged under the new one.
    new = dataclasses.replace(record, spec_hash=ctx.spec_hash, failed=failed, hooks=(), metrics=())
    if record.canary is not None and record.canary == ctx.desired and record.weight < 100:
        if isinstance(ctx.spec.strategy, BlueGreenStrategy):
            # Blue/green never has a partial weight: coming from a weight plan, start at the preview
            # (the alias keeps its current weight until the cut-over moves it to 100%).
            index = record.step_index if record.weight == 0 and record.step_index <= 3 else 0
        else:
            index = rebase(ctx.plan, record.weight)
        new = dataclasses.replace(new, step_index=index)
    return ctx.with_record(new)


# ---- 9. the rollout itself -----------------------------------------------------------------------


def failed_hold(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    failed = is_failed(record, ctx.desired, ctx.spec_hash)
    if failed is None or record.canary is not None or ctx.desired == record.stable:
        return ctx
    phase = record.phase if record.phase in (Phase.ROLLED_BACK, Phase.DEGRADED) else Phase.ROLLED_BACK
    message = (
        f"version {ctx.desired} failed ({failed.reason}) and is not deployed again: "
        "`retry` or a spec change starts it again"
    )
    if record.phase in (Phase.ROLLED_BACK, Phase.DEGRADED):
        # Already recorded with why it ended: the reminder is shown, not written again, after the
        # recorded message, which names what failed (the alarm, the analysis and its values, the hook).
        if record.message and record.reason == failed.reason:
            message = f"{record.message}; not deployed again: `retry` or a spec change starts it again"
        return finish(ctx, record, live=message)
    new = dataclasses.replace(record, phase=phase, reason=failed.reason, message=message)
    return finish(ctx, new)


def first_sight(ctx: Ctx) -> Ctx | Decision:
    if not ctx.first_sight:
        return ctx
    desired = ctx.desired
    assert desired is not None  # publish and preflight ran before
    seen = ctx.seen
    base = dataclasses.replace(ctx.record, spec_hash=ctx.spec_hash)
    request = ctx.observed.request
    if request is not None:
        # A request that predates the record cannot be about this rollout: consume it, unapplied.
        why = f"{request.verb} ignored: it predates tracking of this rollout"
        base = dataclasses.replace(base, last_request=request.id, request_ignored=why)
        ctx = ctx.note(why)
    if seen is None:
        # No trigger can reach an alias that does not exist yet: nothing to protect, create it on target.
        write = make_write(ctx, AliasRouting(desired))
        message = f"alias {ctx.spec.alias} created on version {desired}"
        record = dataclasses.replace(
            base,
            stable=desired,
            phase=Phase.HEALTHY,
            reason=Reason.ALIAS_CREATED,
            message=message,
            pending=write.write,
            step_started_at=ctx.now,
        )
        return finish(ctx, record, actions=(write,), requeue_after=0)
    if seen.additional is not None and seen.weight > 0:
        # Weights the controller did not write: someone else is mid-shift. Report, touch nothing,
        # and look again next time (no record is created, so nothing needs undoing).
        message = (
            f"alias {ctx.spec.alias} already routes {describe(seen)}, not written by this controller; "
            "holding until it routes to one version"
        )
        event = Event(Reason.ALIAS_DRIFT, message, warning=True)
        return finish(ctx.with_record(ctx.record, event), ctx.record, show=(Phase.PAUSED, Reason.ALIAS_DRIFT, message))
    if seen.primary == desired:
        message = f"alias {ctx.spec.alias} already on version {desired}: adopted"
        record = dataclasses.replace(base, stable=desired, phase=Phase.HEALTHY, reason=Reason.ADOPTED, message=message)
        return finish(ctx, record)
    return ctx.with_record(dataclasses.replace(base, stable=seen.primary, phase=Phase.HEALTHY))


def start(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    desired = ctx.desired
    if record.canary is not None or desired is None or desired == record.stable:
        return ctx
    if is_failed(record, desired, ctx.spec_hash) is not None:
        return ctx
    message = f"rollout of version {desired} started from {record.stable}"
    new = dataclasses.replace(
        record,
        spec_hash=ctx.spec_hash,
        canary=desired,
        weight=0,
        step_index=0,
        started_at=ctx.now,
        step_started_at=ctx.now,
        phase=Phase.PROGRESSING,
        reason=Reason.ROLLOUT_STARTED,
        message=message,
        hooks=(),
        weight_at=None,
        metrics=(),
        sequential=(),
        bypass=False,
    )
    return ctx.with_record(new, Event(Reason.ROLLOUT_STARTED, message))


def finished(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if record.canary is not None or ctx.desired != record.stable:
        return ctx
    if record.phase is Phase.HEALTHY:
        return finish(ctx, record)
    message = f"alias {ctx.spec.alias} on version {record.stable}"
    return finish(ctx, dataclasses.replace(record, phase=Phase.HEALTHY, reason=Reason.UP_TO_DATE, message=message))


def paused(ctx: Ctx) -> Ctx | Decision:
    record = ctx.record
    if record.canary is None:
        return ctx
    if ctx.spec.paused or record.paused_by_request:
        reason = Reason.PAUSED_BY_SPEC if ctx.spec.paused else Reason.PAUSED_BY_REQUEST
        how = "spec.paused is true" if ctx.spec.paused else "`resume` continues"
        message = f"paused at {record.weight}% on version {record.canary} ({how})"
        return finish(ctx, dataclasses.replace(record, phase=Phase.PAUSED, reason=reason, message=message))
    if record.phase is Phase.PAUSED and record.reason in (Reason.PAUSED_BY_SPEC, Reason.PAUSED_BY_REQUEST):
        # Leaving a pause restarts the current step's clock: paused time neither counts as bake time
        # nor against the progress deadline (it can only lengthen a pause).
        message = f"resumed at {record.weight}% on version {record.canary}"
        new = dataclasses.replace(
            record, step_started_at=ctx.now, phase=Phase.PROGRESSING, reason=Reason.RESUMED, message=message
        )
        return ctx.with_record(new)
    return ctx


def advance(ctx: Ctx) -> Ctx | Decision:
    """Walk the plan from the current step: skip what is done, stop at the first write or wait."""
    record = ctx.record
    if record.canary is None or record.stable is None:
        return ctx
    if isinstance(ctx.spec.strategy, BlueGreenStrategy):
        return advance_blue_green(ctx, ctx.spec.strategy)
    plan, now = ctx.plan, ctx.now
    canary, stable = record.canary, record.stable
    while True:
        index = record.step_index
        if index >= len(plan):
            write = make_write(ctx, AliasRouting(canary))
            where = f"(step {ctx.steps} of {ctx.steps})"
            message = f"final step: alias {ctx.spec.alias} to version {record.canary} at 100% {where}"
            record = dataclasses.replace(
                record,
                weight=100,
                step_index=len(plan),
                step_started_at=now,
                pending=write.write,
                phase=Phase.PROMOTING,
                reason=record.reason if record.reason in _FINISH_NOW else Reason.PROMOTING,
                message=message,
            )
            return finish(ctx, record, actions=(write,), requeue_after=0)
        step = plan[index]
        if isinstance(step, SetWeight):
            if step.weight <= record.weight:  # never move traffic backwards on the way forward
                record = dataclasses.replace(record, step_index=index + 1)
                continue
            routing = AliasRouting(stable, canary, step.weight / 100)
            write = make_write(ctx, routing)
            message = f"version {record.canary} at {step.weight}% (step {index + 1} of {ctx.steps})"
            record = dataclasses.replace(
                record,
                weight=step.weight,
                step_index=index + 1,
                step_started_at=now,
                pending=write.write,
                phase=Phase.PROGRESSING,
                reason=Reason.WEIGHT_SHIFTED,
                message=message,
            )
            return finish(ctx, record, actions=(write,), requeue_after=_next_wait(plan, index + 1))
        if step.duration is None:
            message = (
                f"version {record.canary} at {record.weight}%: waiting for `promote` (step {index + 1} of {ctx.steps})"
            )
            record = dataclasses.replace(record, phase=Phase.PAUSED, reason=Reason.WAITING_FOR_PROMOTE, message=message)
            return finish(ctx, record)
        started = record.step_started_at if record.step_started_at is not None else now
        left = step.duration - (now - started)
        early = left > 0 and proven_no_regression(ctx.spec, record)
        if left > 0 and not early:
            where = f"(step {index + 1} of {ctx.steps})"
            message = f"version {record.canary} at {record.weight}%: baking for {step.duration:.0f}s {where}"
            # The countdown is shown live; the record keeps the stable text, so waiting writes nothing.
            live = (
                f"version {record.canary} at {record.weight}%: baking, {left:.0f}s of {step.duration:.0f}s left {where}"
            )
            if record.reason == Reason.DRIFT_REVERTED:
                # A reverted drift stays the reason (and its message in view) until the next step.
                return finish(ctx, record, live=f"{live}; {record.message}", requeue_after=left)
            record = dataclasses.replace(record, phase=Phase.PROGRESSING, reason=Reason.BAKING, message=message)
            return finish(ctx, record, live=live, requeue_after=left)
        if early:
            # Every sequential test proved "no regression" at this weight: the timed pause ends now.
            message = ended_early(record, elapsed=now - started, duration=step.duration)
            ctx = ctx.with_record(ctx.record, Event(Reason.PROMOTED_EARLY, message))
            ctx = ctx.note(f"pause ended after {now - started:.0f}s of {step.duration:.0f}s: no regression proven")
        record = dataclasses.replace(record, step_index=index + 1, step_started_at=now)


def gated_advance(ctx: Ctx) -> Ctx | Decision:
    """``advance``, held at the current weight until its metric analysis passed (``core.metric_analysis``)."""
    outcome = advance(ctx)
    return hold_for_analysis(ctx, outcome) if isinstance(outcome, Decision) else outcome


def _next_wait(plan: tuple[Step, ...], index: int) -> float | None:
    if index < len(plan):
        step = plan[index]
        if isinstance(step, Pause):
            return step.duration  # None: an indefinite pause waits for a person
    return 0.0


RULES: tuple[Rule, ...] = (
    function_missing,
    not_owner,
    alias_needed,
    confirm_pending,
    resume_orphaned,
    fold_answers,
    finish_promotion,
    handle_request,
    drift,
    alarm_rollback,
    hook_failed,
    metric_analysis,
    sequential_analysis,
    progress_deadline,
    reissue_pending,
    preflight,
    publish,
    spec_reverted,
    superseded,
    spec_changed,
    failed_hold,
    first_sight,
    start,
    # Once more after a start: a version never gets its first traffic while a watched alarm fires.
    alarm_rollback,
    finished,
    paused,
    analysis_inconclusive,
    warm_up,
    run_hooks,
    gated_advance,
)


def decide(
    spec: RolloutSpec, record: Record | None, observed: Observed, now: float, *, time_scale: float = 1.0
) -> Decision:
    """The next step of ``spec``'s rollout, given the durable ``record`` (None on first sight), what the
    shell ``observed`` this tick and the clock. Pure: same inputs, same Decision.

    ``time_scale`` multiplies every pause of the plan (the demo runs minutes as seconds).
    """
    # Announcements every notification target had are forgotten by whatever this decision writes.
    before = without_announced(record or Record(), observed.announced)
    ctx = Ctx(
        spec=spec,
        observed=observed,
        now=now,
        plan=build_plan(spec.strategy, time_scale=time_scale),
        spec_hash=spec_hash(spec),
        desired=observed.desired_version or spec.version,
        first_sight=record is None,
        original=before,
        record=before,
        time_scale=time_scale,
    )
    decision = with_settings(spec, record, observed, _apply_rules(ctx))
    decision = with_announcements(spec.key, before, decision, now=now, announce=observed.announce)
    if (
        record is not None
        and before != record
        and not decision.record_changed
        and decision.status.phase
        not in (
            Phase.INVALID,
            Phase.PENDING,
        )
    ):
        decision = dataclasses.replace(decision, record_changed=True)  # the outbox shrank: worth a write
    decision = _wake_at(decision, wake_after(spec, decision.record, now, time_scale=time_scale))
    decision = _wake_at(decision, sequential_wake_after(spec, decision.record, now, time_scale=time_scale))
    return _wake_at(decision, _deadline_after(ctx, decision.record))


def _wake_at(decision: Decision, wait: float | None) -> Decision:
    """Ask to be woken ``wait`` seconds from now too (the earlier of that and what was asked)."""
    if wait is None or (decision.requeue_after is not None and decision.requeue_after <= wait):
        return decision
    return dataclasses.replace(decision, requeue_after=wait)


def _deadline_after(ctx: Ctx, record: Record) -> float | None:
    """Seconds until ``record``'s progress deadline passes (None: none applies), so a rollout waiting
    on something that may never come (a hook, an analysis) is looked at when its deadline is up."""
    deadline = ctx.spec.progress_deadline
    if deadline is None or record.canary is None or record.step_started_at is None:
        return None
    later = dataclasses.replace(ctx, record=record)
    allowed = current_pause(later)
    if allowed is None or _paused(later):
        return None
    return max(0.0, record.step_started_at + allowed + deadline - ctx.now) + _DEADLINE_MARGIN


def _apply_rules(ctx: Ctx) -> Decision:
    for rule in RULES:
        outcome = rule(ctx)
        if isinstance(outcome, Decision):
            return outcome
        ctx = outcome
    # Every path ends in a rule above (``advance`` always answers for a rollout in flight); a record
    # with nothing in flight and no desired version lands here.
    return finish(ctx, ctx.record)


__all__ = ["RULES", "confirm", "decide", "orphan", "rebase"]
