"""Blue/green as a small state machine over ``record.step_index``, not a weight plan.

0. the preview alias gets the new version (whoever calls the preview alias tests it);
1. wait for ``promote`` (or ``autoPromoteAfter`` seconds when ``autoPromote``);
2. cut-over, first half: ``previousAlias`` (if set) gets the outgoing version, so ``undo`` later is
   one alias update;
3. cut-over, second half: the main alias gets the new version at 100% (phase Promoting);
4. after that write is confirmed the common promotion rule makes it Healthy.

``beforeAllowTraffic`` is asked for on the way into step 2 (before the cut-over touches any alias),
so a hook can test the new version on the preview alias; see ``controller.core.lifecycle``.

Each alias write is its own decision (write-ahead allows one in flight), so the two cut-over writes
come one per decide with ``requeue_after=0``. Until step 3 the main alias keeps the stable version,
so a rollback before the cut-over needs no alias write at all.
"""

from __future__ import annotations

import dataclasses

from controller.core.context import Ctx, finish, make_write
from controller.core.lifecycle import ask
from controller.core.reasons import Reason
from controller.core.types import AliasRouting, Decision, Phase, Record, UpdateAlias
from controller.document.model import BlueGreenStrategy

# Reasons of a "finish now" request, kept on the record through the cut-over.
_FINISH_NOW = (Reason.PROMOTE_FULL, Reason.EMERGENCY_BYPASS)


def advance_blue_green(ctx: Ctx, strategy: BlueGreenStrategy) -> Decision:
    record = ctx.record
    assert record.canary is not None and record.stable is not None
    now, canary, stable = ctx.now, record.canary, record.stable
    while True:
        index = record.step_index
        hook = ask(ctx, record) if index >= 2 else None
        if hook is not None:
            return hook
        if index == 0:
            return _write(
                ctx,
                record,
                make_write(ctx, AliasRouting(canary), alias=strategy.preview_alias),
                step_index=1,
                reason=Reason.PREVIEW_READY,
                message=f"version {record.canary} on preview alias {strategy.preview_alias}",
                requeue_after=(strategy.auto_promote_after or 0.0) if strategy.auto_promote else None,
            )
        if index == 1:
            if not strategy.auto_promote:
                record = dataclasses.replace(
                    record,
                    phase=Phase.PAUSED,
                    reason=Reason.WAITING_FOR_PROMOTE,
                    message=(
                        f"version {record.canary} is on preview alias {strategy.preview_alias}; "
                        "waiting for `promote` to cut over"
                    ),
                )
                return finish(ctx, record)
            started = record.step_started_at if record.step_started_at is not None else now
            left = (strategy.auto_promote_after or 0.0) - (now - started)
            if left > 0:
                where = f"version {record.canary} on preview alias {strategy.preview_alias}"
                after = strategy.auto_promote_after or 0.0
                record = dataclasses.replace(
                    record,
                    phase=Phase.PROGRESSING,
                    reason=Reason.BAKING,
                    message=f"{where}; cut-over after {after:.0f}s",
                )
                # The countdown is status-only: the record does not change while the rollout waits.
                return finish(ctx, record, live=f"{where}; cut-over in {left:.0f}s", requeue_after=left)
            record = dataclasses.replace(record, step_index=2, step_started_at=now)
            continue
        if index == 2:
            if strategy.previous_alias is None:
                record = dataclasses.replace(record, step_index=3)
                continue
            return _write(
                ctx,
                record,
                make_write(ctx, AliasRouting(stable), alias=strategy.previous_alias),
                step_index=3,
                reason=Reason.CUTTING_OVER,
                message=f"cut-over: previous alias {strategy.previous_alias} keeps version {record.stable}",
            )
        # index 3 (or beyond, after a strategy edit): the main alias, in one write.
        return _write(
            ctx,
            dataclasses.replace(record, weight=100),
            make_write(ctx, AliasRouting(canary)),
            step_index=4,
            phase=Phase.PROMOTING,
            reason=record.reason if record.reason in _FINISH_NOW else Reason.PROMOTING,
            message=f"cut-over: alias {ctx.spec.alias} to version {record.canary}",
        )


def _write(
    ctx: Ctx,
    record: Record,
    write: UpdateAlias,
    *,
    step_index: int,
    reason: str,
    message: str,
    phase: Phase = Phase.PROGRESSING,
    requeue_after: float | None = 0,
) -> Decision:
    """One step that is one alias write: recorded ahead as ``pending``, its step starting now."""
    record = dataclasses.replace(
        record,
        step_index=step_index,
        step_started_at=ctx.now,
        pending=write.write,
        phase=phase,
        reason=reason,
        message=message,
    )
    return finish(ctx, record, actions=(write,), requeue_after=requeue_after)
