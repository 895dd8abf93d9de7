"""Lifecycle hooks in the core: when a hook must run, and what its answer does.

CodeDeploy-style ``beforeAllowTraffic`` / ``afterAllowTraffic`` checks (Flagger-style webhooks). The
core never runs a hook: it asks for one with a ``RunHook`` action, the shell runs it and puts the
answer in the record with ``record_hook``, and the next decide acts on that answer. So:

- ``beforeAllowTraffic`` must have succeeded before the new version gets any traffic on the main
  alias: weight plans ask for it before their first weight (after the warm-up, when provisioned
  concurrency is declared); blue/green asks for it before the cut-over, so the hook can test the
  preview alias.
- ``afterAllowTraffic`` runs once the new version has 100% of the alias (the final write confirmed);
  the rollout becomes Healthy only after it succeeded.
- A failed hook rolls back to the stable version like an alarm (RolledBack, ``HookFailed``, the
  version marked failed): it is not run again by itself; ``retry`` or a spec change starts the
  rollout again, and the hooks with it.
- No answer in the record (the controller died while the hook ran) means the hook is asked for again,
  never skipped: hooks must be idempotent. An answer that is neither success nor failure
  (Inconclusive, Running) is asked for again after ``RECHECK_AFTER`` seconds.
- A hook runs beside the reconcile, never inside it: the shell starts it and reports it as running
  (``Observed.hooks_running``) until its answer comes (``Observed.hook_answers``), and every tick in
  between is an ordinary decide. So a hook that never answers holds back no alarm, no ``abort`` and
  no progress deadline. ``fold_answers`` puts an answer in the record only when it is for the
  attempt in flight and the hook it waits for; a late one (the attempt was rolled back meanwhile)
  is ignored, with an Event saying so.

Answers belong to the rollout in flight: they are cleared when it starts, ends or its spec changes.
"""

from __future__ import annotations

import dataclasses

from controller.core.context import Ctx, finish, withdraw_decision
from controller.core.reasons import Outcome, Reason
from controller.core.types import Decision, Event, HookAnswer, HookRun, Phase, Record, RunHook, Verdict
from controller.document.model import Hook, RolloutSpec

BEFORE_ALLOW_TRAFFIC = "beforeAllowTraffic"
AFTER_ALLOW_TRAFFIC = "afterAllowTraffic"
# Seconds before a hook that answered neither success nor failure is asked again.
RECHECK_AFTER = 10.0
# A hook's answer is quoted in the record (tags are small): long answers are cut.
REASON_LIMIT = 200


def declared(spec: RolloutSpec, name: str) -> Hook | None:
    """The hook ``name`` as declared in the spec (None: not declared)."""
    return spec.hooks.before_allow_traffic if name == BEFORE_ALLOW_TRAFFIC else spec.hooks.after_allow_traffic


def answer(record: Record, name: str) -> HookRun | None:
    return next((run for run in record.hooks if run.name == name), None)


def passed(spec: RolloutSpec, record: Record, name: str) -> bool:
    """Hook ``name`` is not declared, or it succeeded for the rollout in flight (or an emergency bypass skips it)."""
    run = answer(record, name)
    if record.bypass:
        return True
    return declared(spec, name) is None or (run is not None and run.outcome is Verdict.SUCCESSFUL)


def record_hook(record: Record, *, name: str, verdict: Verdict, reason: str, at: float) -> Record:
    """``record`` with hook ``name``'s answer (replacing an earlier one): what the shell persists."""
    text = reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 3] + "..."
    kept = tuple(run for run in record.hooks if run.name != name)
    return dataclasses.replace(record, hooks=(*kept, HookRun(name, verdict, text, at)))


def describe_hook(hook: Hook) -> str:
    return f"function {hook.function}" if hook.function else f"url {hook.url}"


# ---- rules ---------------------------------------------------------------------------------------


def _expected(ctx: Ctx, record: Record, answer: HookAnswer) -> bool:
    """The answer is for the attempt in flight and for the hook it is waiting for."""
    return record.canary == answer.version and record.started_at == answer.attempt and due(ctx, record) == answer.name


def fold_answers(ctx: Ctx) -> Ctx | Decision:
    """Rule (right after confirming writes): hook answers the shell brought go into the record, or are ignored."""
    record = ctx.record
    for run in ctx.observed.hook_answers:
        held = answer(record, run.name)
        if held is not None and (held.outcome, held.at) == (run.outcome, run.at):
            continue  # recorded already (handed over again after a reconcile that failed later on)
        if _expected(ctx, record, run):
            record = record_hook(record, name=run.name, verdict=run.outcome, reason=run.reason, at=run.at)
            continue
        message = (
            f"hook {run.name} answered {run.outcome} for version {run.version} after that attempt ended "
            f"({record.phase}, {record.reason or 'no reason'}): answer ignored"
        )
        ctx = ctx.with_record(record, Event(Reason.HOOK_ANSWER_IGNORED, message, warning=True))
    return ctx.with_record(record) if record is not ctx.record else ctx


def hook_failed(ctx: Ctx) -> Ctx | Decision:
    """Rule (safety, beside the alarms): a failed hook rolls the new version back, once."""
    record = ctx.record
    failed = next((run for run in record.hooks if run.outcome is Verdict.FAILED), None)
    if record.canary is None or failed is None or record.bypass:
        return ctx
    message = (
        f"hook {failed.name} failed ({failed.reason or 'no reason given'}): version {record.canary} rolled back "
        f"to {record.stable}; `retry` or a spec change starts it again"
    )
    return withdraw_decision(
        ctx, phase=Phase.ROLLED_BACK, reason=Reason.HOOK_FAILED, message=message, outcome=Outcome.ROLLED_BACK, fail=True
    )


def due(ctx: Ctx, record: Record) -> str | None:
    """The hook that must answer before ``record``'s rollout moves on, if any."""
    if record.canary is None or record.stable is None or record.pending is not None:
        return None
    if record.weight >= 100:
        name = AFTER_ALLOW_TRAFFIC
    elif record.weight == 0 and (ctx.blue_green is None or record.step_index >= 2):
        # Blue/green's steps 0-1 only touch the preview alias: the main alias is what "traffic" means.
        name = BEFORE_ALLOW_TRAFFIC
    else:
        return None
    return None if passed(ctx.spec, record, name) else name


def ask(ctx: Ctx, record: Record) -> Decision | None:
    """The decision that runs the hook ``record`` waits for (or waits to run it again); None: none due."""
    name = due(ctx, record)
    hook = declared(ctx.spec, name) if name is not None else None
    if name is None or hook is None:
        return None
    assert record.canary is not None and record.stable is not None  # due() says so
    phase = Phase.PROMOTING if name == AFTER_ALLOW_TRAFFIC else Phase.PROGRESSING
    message = f"running hook {name} ({describe_hook(hook)}) for version {record.canary}"
    new = dataclasses.replace(record, phase=phase, reason=Reason.RUNNING_HOOK, message=message)
    if name in ctx.observed.hooks_running:
        # Started already: wait for its answer like for any other input; the shell wakes us when it comes.
        return finish(ctx.with_record(new), new)
    last = answer(record, name)
    if last is not None and ctx.now - last.at < RECHECK_AFTER:
        left = RECHECK_AFTER - (ctx.now - last.at)
        live = f"hook {name} answered {last.outcome} ({last.reason}); asking again in {left:.0f}s"
        return finish(ctx, new, live=live, requeue_after=left)
    action = RunHook(name=name, hook=hook, version=record.canary, stable=record.stable, attempt=record.started_at)
    return finish(ctx.with_record(new), new, actions=(action,))


def run_hooks(ctx: Ctx) -> Ctx | Decision:
    """Rule (just before the plan advances): a declared hook that has not passed runs first."""
    decision = ask(ctx, ctx.record)
    return ctx if decision is None else decision


__all__ = [
    "AFTER_ALLOW_TRAFFIC",
    "BEFORE_ALLOW_TRAFFIC",
    "answer",
    "ask",
    "declared",
    "describe_hook",
    "fold_answers",
    "hook_failed",
    "passed",
    "record_hook",
    "run_hooks",
]
