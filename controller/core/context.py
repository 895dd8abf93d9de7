"""What every decision rule sees (``Ctx``) and the few helpers they share.

``decide`` threads one immutable ``Ctx`` through a list of small rules. A rule either returns a
``Decision`` (it has the last word) or a ``Ctx`` (possibly with an updated working record, extra
events or notes) for the next rule. The helpers here are the only places that build alias writes,
withdraw a canary, and turn a record into a ``Decision``, so the write-ahead protocol and the status
derivation cannot drift apart between rules.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from controller.core.reasons import NOT_AN_END, Outcome, Reason
from controller.core.status import evidence_of, plan_steps, step_number, with_evidence
from controller.core.types import (
    Action,
    AliasRouting,
    AliasWrite,
    Decision,
    Event,
    FailedVersion,
    HistoryEntry,
    Observed,
    Phase,
    Record,
    Status,
    UpdateAlias,
    Warmup,
)
from controller.document.model import BlueGreenStrategy, Pause, RolloutSpec, Step

# History is kept short: it is stored in tags on the function next to the rest of the record.
HISTORY_LIMIT = 5
# Blue/green walks four steps: preview, wait for promote, previous alias, main alias.
BLUE_GREEN_STEPS = 4
_WARNING_PHASES = frozenset({Phase.DEGRADED, Phase.ROLLED_BACK, Phase.INVALID, Phase.ORPHANED})


@dataclass(frozen=True)
class Ctx:
    spec: RolloutSpec
    observed: Observed
    now: float
    plan: tuple[Step, ...]
    spec_hash: str
    desired: str | None  # the version to reach: resolved publish, else spec.version
    first_sight: bool  # no record was passed in
    original: Record  # the record as passed in (``Record()`` on first sight)
    record: Record  # the working record the rules evolve
    events: tuple[Event, ...] = ()
    notes: tuple[str, ...] = ()  # why a request did not apply, appended to the message
    time_scale: float = 1.0  # multiplies the plan's pauses and the metrics' intervals (demo, tests)

    @property
    def blue_green(self) -> BlueGreenStrategy | None:
        return self.spec.strategy if isinstance(self.spec.strategy, BlueGreenStrategy) else None

    @property
    def steps(self) -> int:
        """The plan's steps as people count them (the final move to 100% is one): ``core.status``."""
        return BLUE_GREEN_STEPS if self.blue_green else plan_steps(len(self.plan))

    @property
    def seen(self) -> AliasRouting | None:
        """The main alias as read this tick; None when it does not exist or was not read."""
        if self.observed.alias_read and self.observed.alias_exists:
            return self.observed.alias
        return None

    def with_record(self, record: Record, *events: Event) -> Ctx:
        return dataclasses.replace(self, record=record, events=self.events + events)

    def note(self, text: str) -> Ctx:
        return dataclasses.replace(self, notes=(*self.notes, text))


def describe(routing: AliasRouting | None) -> str:
    if routing is None:
        return "missing"
    if routing.additional is None or routing.weight <= 0:
        return f"version {routing.primary} at 100%"
    percent = routing.weight * 100
    return f"version {routing.primary} at {100 - percent:g}% + {routing.additional} at {percent:g}%"


def expected_routing(record: Record) -> AliasRouting | None:
    """What the main alias holds once the record's writes (including a pending one) are made."""
    if record.stable is None:
        return None
    if record.canary is not None and record.weight >= 100:
        return AliasRouting(record.canary)
    if record.canary is not None and record.weight > 0:
        return AliasRouting(record.stable, record.canary, record.weight / 100)
    return AliasRouting(record.stable)


def alias_state(ctx: Ctx, alias: str) -> tuple[bool, AliasRouting | None]:
    """(read this tick, routing or None when missing) for the main alias or a blue/green side alias.

    Side aliases are listed in ``observed.other_aliases`` whenever the main alias is read; one that
    is absent there does not exist.
    """
    if alias == ctx.spec.alias:
        return ctx.observed.alias_read, ctx.seen
    return ctx.observed.alias_read, ctx.observed.other_aliases.get(alias)


def believed_main(ctx: Ctx) -> AliasRouting | None:
    """The main alias as read, or as the record believes it to be when it was not read."""
    if ctx.observed.alias_read:
        return ctx.seen
    pending = ctx.record.pending
    if pending is not None and pending.alias == ctx.spec.alias:
        # Unconfirmed: it may or may not have happened; the shell re-reads before it writes anyway.
        return pending.previous
    return expected_routing(ctx.record)


def make_write(ctx: Ctx, routing: AliasRouting, *, alias: str | None = None, rollback: bool = False) -> UpdateAlias:
    """An alias write whose ``AliasWrite`` also goes into the record (write-ahead)."""
    name = alias or ctx.spec.alias
    previous = believed_main(ctx) if name == ctx.spec.alias else alias_state(ctx, name)[1]
    return UpdateAlias(AliasWrite(name, routing, previous), create=creates(ctx, name), rollback=rollback)


def creates(ctx: Ctx, alias: str) -> bool:
    """Whether a write to ``alias`` must create it (main alias read and absent; side alias not listed)."""
    if alias == ctx.spec.alias:
        return ctx.observed.alias_read and not ctx.observed.alias_exists
    return alias not in ctx.observed.other_aliases


def is_failed(record: Record, version: str | None, spec_hash: str) -> FailedVersion | None:
    for failed in record.failed:
        if failed.version == version and failed.spec_hash == spec_hash:
            return failed
    return None


def with_failed(record: Record, version: str, spec_hash: str, reason: str) -> tuple[FailedVersion, ...]:
    # Only marks under the current hash matter; older ones are dropped to keep the record small.
    kept = tuple(f for f in record.failed if f.spec_hash == spec_hash and f.version != version)
    return (*kept, FailedVersion(version, spec_hash, reason))


def with_history(record: Record, entry: HistoryEntry) -> tuple[HistoryEntry, ...]:
    """Newest last, at most ``HISTORY_LIMIT``; notes (logged requests, reverted drift) make room before
    finished attempts do."""
    entries = [*record.history, entry]
    while len(entries) > HISTORY_LIMIT:
        requested = [i for i, e in enumerate(entries[:-1]) if e.outcome in NOT_AN_END]
        del entries[requested[0] if requested else 0]
    return tuple(entries)


def alarms_count_since(record: Record) -> float | None:
    """From when an alarm that was in ALARM, and is no longer, still rolls this attempt back (None: no attempt).

    The attempt's start, not the instant its canary weight was confirmed: every instant the canary
    had traffic is after the start (the alias write reaches AWS before its confirmation is stamped,
    and a later step moves ``weight_at`` on while the earlier weight's traffic is still in the past),
    so nothing the canary served is left out. The few seconds between the start and the first traffic
    (hooks, warm-up) count too, as they always did for an alarm in ALARM at a poll: a version never
    gets its first traffic while a watched alarm fires. Everything before the start belongs to an
    earlier attempt or to the stable version alone, and never counts: a ``retry`` starts afresh.
    """
    if record.canary is None:
        return None
    return record.started_at if record.started_at is not None else record.weight_at


def warming(spec: RolloutSpec, record: Record) -> bool:
    """The new version is waiting for its provisioned concurrency before its first traffic.

    Pure and cheap, so the shell uses it too: it polls the provisioned-concurrency status only then.
    """
    return (
        spec.concurrency is not None
        and spec.concurrency.provisioned is not None
        and record.canary is not None
        and record.weight == 0
        and record.step_index == 0
        and record.pending is None
    )


def current_pause(ctx: Ctx) -> float | None:
    """Seconds the current step may legitimately last (a timed pause), 0 for a write step, None if unbounded."""
    record = ctx.record
    if record.pending is not None:
        # The step after a write starts only once the write is confirmed: until then, no allowance.
        return 0.0
    if warming(ctx.spec, record) and ctx.spec.concurrency is not None:
        # The warm-up has its own bound (warmupTimeout): the progress deadline counts after it.
        return ctx.spec.concurrency.warmup_timeout
    bg = ctx.blue_green
    if bg is not None:
        if record.step_index == 1:
            return (bg.auto_promote_after or 0.0) if bg.auto_promote else None
        return 0.0
    if record.step_index < len(ctx.plan):
        step = ctx.plan[record.step_index]
        if isinstance(step, Pause):
            return step.duration
    return 0.0


def withdraw(
    ctx: Ctx,
    *,
    phase: Phase,
    reason: Reason,
    message: str,
    outcome: Outcome,
    fail: bool,
    by: str = "",
) -> tuple[Record, UpdateAlias | None]:
    """Take the canary out: the record without it and, if the alias is not already there, the write
    that puts the stable version back at 100% (marked ``rollback`` so the API budget serves it first)."""
    record = ctx.record
    assert record.canary is not None and record.stable is not None
    new = dataclasses.replace(
        record,
        canary=None,
        weight=0,
        step_index=0,
        step_started_at=ctx.now,
        started_at=None,
        pending=None,
        phase=phase,
        reason=reason,
        message=message,
        history=with_history(record, HistoryEntry(record.canary, outcome, reason, ctx.now, by)),
        failed=with_failed(record, record.canary, ctx.spec_hash, reason) if fail else record.failed,
        hooks=(),
        weight_at=None,
        metrics=(),
        sequential=(),
        bypass=False,
    )
    target = AliasRouting(record.stable)
    main_pending = record.pending is not None and record.pending.alias == ctx.spec.alias
    if target.same_as(believed_main(ctx)) and (ctx.observed.alias_read or not main_pending):
        return new, None
    write = make_write(ctx, target, rollback=True)
    return dataclasses.replace(new, pending=write.write), write


def withdraw_decision(
    ctx: Ctx, *, phase: Phase, reason: Reason, message: str, outcome: Outcome, fail: bool, by: str = ""
) -> Decision:
    """``withdraw`` as the final answer of a rule (or an ``abort``), with its warning Event.

    When the spec already wants yet another version, the next decide starts it: ask for it at once
    (``requeue_after=0``) rather than leaving the withdrawal looking like the last word.
    """
    canary = ctx.record.canary
    new, write = withdraw(ctx, phase=phase, reason=reason, message=message, outcome=outcome, fail=fail, by=by)
    ctx = ctx.with_record(new, Event(reason, message, warning=fail))
    again = 0.0 if ctx.desired not in (canary, new.stable) else None
    return finish(ctx, new, actions=(write,) if write else (), requeue_after=again)


def finish(
    ctx: Ctx,
    record: Record,
    *,
    actions: tuple[Action, ...] = (),
    requeue_after: float | None = None,
    show: tuple[Phase, str, str] | None = None,
    live: str | None = None,
    warmup: Warmup | None = None,
    read_alias: bool = False,
    read_provisioned: bool = False,
) -> Decision:
    """Turn the final record into a Decision: status, transition events, notes, change tracking.

    ``show`` overrides phase/reason/message in the status only (Invalid and Pending answers leave the
    record untouched so that nothing is written anywhere). ``live`` replaces the status message only:
    text that changes from tick to tick (a countdown, warm-up progress) never goes into the record,
    so a rollout that is only waiting writes nothing.
    """
    if ctx.notes and show is None:
        record = dataclasses.replace(record, message="; ".join((record.message, *ctx.notes)).strip("; "))
    if show is None and record.steps != ctx.steps and record != ctx.original and record.stable is not None:
        # Only with a write that happens anyway: keeping the count fresh must never cost a tag write.
        record = dataclasses.replace(record, steps=ctx.steps)
    phase, reason, message = show if show is not None else (record.phase, record.reason, record.message)
    if live is not None and show is None:
        message = "; ".join((live, *ctx.notes))
    if show is not None and ctx.notes:
        message = "; ".join((message, *ctx.notes))
    evidence = evidence_of(record)
    if show is None:
        message = with_evidence(message, evidence)
    events = ctx.events
    before = None if ctx.first_sight else ctx.original.phase
    if phase != before and not any(e.reason == reason for e in events):
        events = (*events, Event(reason, message, warning=phase in _WARNING_PHASES))
    status = Status(
        phase=phase,
        stable_version=record.stable,
        canary_version=record.canary,
        canary_weight=record.weight if record.canary is not None else 0,
        current_step=step_number(record, ctx.steps),
        steps=ctx.steps,
        step_started_at=record.step_started_at,
        message=message,
        reason=reason,
        history=record.history,
        errors=(message,) if phase is Phase.INVALID else (),
        warmup=warmup,
        step_allowance=current_pause(ctx if record is ctx.record else dataclasses.replace(ctx, record=record)),
        evidence=evidence,
    )
    return Decision(
        actions=actions,
        record=record,
        status=status,
        events=events,
        requeue_after=requeue_after,
        read_alias=read_alias,
        read_provisioned=read_provisioned,
        record_changed=record != ctx.original,
    )


def canary_in_flight(spec: RolloutSpec, record: Record) -> bool:
    """The new version has traffic from a weight plan and no write is in flight: what the analyses
    that compare it (metrics, sequential tests) read and judge (a blue/green preview has none)."""
    return (
        not isinstance(spec.strategy, BlueGreenStrategy)
        and record.canary is not None
        and record.stable is not None
        and 0 < record.weight < 100
        and record.pending is None
        and record.weight_at is not None
        and not record.bypass
    )
