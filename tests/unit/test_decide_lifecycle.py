"""Lifecycle hooks and driftPolicy in the pure core, driven through the simulated shell."""

from __future__ import annotations

import dataclasses

from controller.analysis.hooks import judge_invocation
from controller.core.lifecycle import AFTER_ALLOW_TRAFFIC, BEFORE_ALLOW_TRAFFIC, RECHECK_AFTER, record_hook
from controller.core.reasons import Reason
from controller.core.types import AliasRouting, Phase, RunHook, UpdateAlias, Verb, Verdict
from controller.document.model import (
    AllAtOnceStrategy,
    BlueGreenStrategy,
    CanaryStrategy,
    Concurrency,
    Hook,
    Hooks,
    Pause,
    SetWeight,
    Strategy,
)
from tests.unit.simulator import World, api_spec, versions

PRE = Hook(function="pre")
POST = Hook(url="https://hooks.example.com/post")


def world(
    strategy: Strategy | None = None, *, before: Hook | None = PRE, after: Hook | None = None, **spec: object
) -> World:
    rollout = api_spec(
        strategy or CanaryStrategy((SetWeight(10), Pause(60))),
        hooks=Hooks(before_allow_traffic=before, after_allow_traffic=after),
    )
    rollout = dataclasses.replace(rollout, **spec)  # type: ignore[arg-type]
    return World(spec=rollout, alias=AliasRouting("1"), versions=versions("1", "2"))


def hook_actions(w: World) -> list[RunHook]:
    return [a for d in w.decisions for a in d.actions if isinstance(a, RunHook)]


def test_before_hook_runs_before_the_first_weight() -> None:
    w = world()
    decision = w.tick()
    (action,) = decision.actions
    assert isinstance(action, RunHook)
    assert (action.name, action.version, action.stable, action.hook) == (BEFORE_ALLOW_TRAFFIC, "2", "1", PRE)
    # No requeue: the hook runs beside the reconciles and its answer wakes the rollout.
    assert (decision.status.reason, decision.requeue_after) == (Reason.RUNNING_HOOK, None)
    assert w.alias == AliasRouting("1")
    w.tick()
    assert w.alias == AliasRouting("1", "2", 0.1)
    assert len(hook_actions(w)) == 1


def test_a_running_hook_is_not_started_twice_and_holds_the_traffic() -> None:
    w = world()
    w.hook_delay = 30.0
    w.tick()
    for _ in range(5):
        w.now += 5
        decision = w.tick()
        assert not decision.actions and decision.status.reason == Reason.RUNNING_HOOK
    assert len(hook_actions(w)) == 1 and w.alias == AliasRouting("1")
    w.now += 5
    w.tick()  # answered now: the first weight goes out
    assert w.alias == AliasRouting("1", "2", 0.1) and len(hook_actions(w)) == 1


def never_answering(strategy: Strategy | None = None, **spec: object) -> World:
    """A rollout whose afterAllowTraffic hook (at 100% of the traffic) has been asked and never answers."""
    w = world(strategy or AllAtOnceStrategy(), before=None, after=POST, **spec)
    w.hook_delay = float("inf")
    w.settle()
    assert w.alias == AliasRouting("2") and w.record is not None and w.record.reason == Reason.RUNNING_HOOK
    return w


def test_an_alarm_rolls_back_while_a_hook_never_answers() -> None:
    w = never_answering(analysis=dataclasses.replace(api_spec(AllAtOnceStrategy()).analysis, alarms=("errors",)))
    w.alarms = frozenset({"errors"})
    w.now += 1
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.ALARM_FIRED)
    assert w.alias == AliasRouting("1")


def test_abort_acts_while_a_hook_never_answers() -> None:
    w = never_answering()
    w.ask(Verb.ABORT)
    w.now += 1
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.ABORTED)
    assert w.alias == AliasRouting("1")


def test_the_progress_deadline_acts_while_a_hook_never_answers() -> None:
    w = never_answering(progress_deadline=4.0)
    w.now += 3
    waiting = w.tick()
    assert waiting.status.reason == Reason.RUNNING_HOOK
    # Nothing else will wake it (the hook never answers): the core asks to be looked at when the deadline is up.
    assert waiting.requeue_after is not None and 1.0 <= waiting.requeue_after <= 1.01
    w.now += 2
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.DEGRADED, Reason.PROGRESS_DEADLINE_EXCEEDED)
    assert w.alias == AliasRouting("1")


def test_a_late_answer_is_ignored_and_said_so() -> None:
    w = never_answering()
    w.ask(Verb.ABORT)
    w.tick()
    assert w.record is not None and w.record.phase is Phase.ROLLED_BACK
    w.hook_delay = 0.0  # the hook answers at last, for an attempt that is over
    w.now += 60
    decision = w.tick()
    (event,) = [e for e in decision.events if e.reason == Reason.HOOK_ANSWER_IGNORED]
    assert event.warning and "afterAllowTraffic" in event.message and "ignored" in event.message
    assert decision.status.phase is Phase.ROLLED_BACK and w.record.hooks == ()
    assert not decision.actions and w.alias == AliasRouting("1")


def test_failed_before_hook_rolls_back_and_is_not_run_again_until_retry() -> None:
    w = world()
    w.hooks_pass = False
    w.tick()
    decision = w.tick()
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.HOOK_FAILED)
    assert "beforeAllowTraffic" in decision.status.message and "simulated" in decision.status.message
    assert not decision.actions  # nothing to withdraw: it never had traffic
    assert w.record is not None and [f.version for f in w.record.failed] == ["2"]
    for _ in range(5):
        w.now += 600
        assert not w.tick().actions
    assert len(hook_actions(w)) == 1
    w.hooks_pass = True
    w.ask(Verb.RETRY)
    w.tick()
    w.tick()
    assert len(hook_actions(w)) == 2 and w.alias == AliasRouting("1", "2", 0.1)


def test_a_crash_while_the_hook_runs_runs_it_again() -> None:
    w = world()
    w.tick(crash="before-write")
    assert w.record is not None and w.record.hooks == ()
    decision = w.tick()
    assert isinstance(decision.actions[0], RunHook)
    assert w.alias == AliasRouting("1")


def test_an_inconclusive_answer_is_asked_again_later() -> None:
    w = world()
    w.tick(crash="before-write")
    assert w.record is not None
    w.record = record_hook(w.record, name=BEFORE_ALLOW_TRAFFIC, verdict=Verdict.INCONCLUSIVE, reason="?", at=w.now)
    waiting = w.tick()
    assert not waiting.actions and waiting.requeue_after == RECHECK_AFTER
    w.now += RECHECK_AFTER
    assert isinstance(w.tick().actions[0], RunHook)


def test_before_hook_waits_for_the_warm_up() -> None:
    w = world(concurrency=Concurrency(provisioned=2))
    w.tick()
    assert not hook_actions(w)  # still warming
    w.now += w.warm_delay
    w.tick()
    assert len(hook_actions(w)) == 1 and w.alias == AliasRouting("1")


def test_after_hook_gates_the_promotion_and_a_failure_rolls_back_from_100() -> None:
    w = world(AllAtOnceStrategy(), before=None, after=POST)
    w.tick()
    assert w.alias == AliasRouting("2")
    w.hooks_pass = False
    decision = w.tick()
    assert isinstance(decision.actions[0], RunHook) and decision.actions[0].name == AFTER_ALLOW_TRAFFIC
    assert decision.status.phase is Phase.PROMOTING
    decision = w.tick()
    (write,) = decision.actions
    assert isinstance(write, UpdateAlias) and write.rollback and write.write.routing == AliasRouting("1")
    assert (decision.status.phase, decision.status.reason) == (Phase.ROLLED_BACK, Reason.HOOK_FAILED)
    assert decision.record.history[-1].outcome == "RolledBack"


def test_after_hook_success_promotes() -> None:
    w = world(AllAtOnceStrategy(), after=POST)
    decision = w.settle()
    assert decision.status.phase is Phase.HEALTHY and w.record is not None and w.record.hooks == ()
    assert [a.name for a in hook_actions(w)] == [BEFORE_ALLOW_TRAFFIC, AFTER_ALLOW_TRAFFIC]


def test_blue_green_runs_the_before_hook_at_the_cut_over_not_before_the_preview() -> None:
    w = world(BlueGreenStrategy(preview_alias="green", auto_promote=True, auto_promote_after=30))
    w.tick()
    assert w.side == {"green": AliasRouting("2")} and not hook_actions(w)
    w.now += 30
    w.tick()
    assert len(hook_actions(w)) == 1 and w.alias == AliasRouting("1")
    w.settle()
    assert w.alias == AliasRouting("2")


def test_drift_hold_reports_and_writes_nothing() -> None:
    w = world(before=None)
    w.tick()
    w.alias = AliasRouting("1", "2", 0.5)
    decision = w.tick()
    assert not decision.actions
    assert (decision.status.phase, decision.status.reason) == (Phase.PAUSED, Reason.ALIAS_DRIFT)


def test_drift_revert_reports_then_writes_back_once() -> None:
    w = world(before=None, drift_policy="Revert")
    w.tick()
    w.alias = AliasRouting("1", "2", 0.5)
    decision = w.tick()
    (write,) = decision.actions
    assert isinstance(write, UpdateAlias) and write.write.routing == AliasRouting("1", "2", 0.1)
    assert [e.reason for e in decision.events][:1] == [Reason.ALIAS_DRIFT] and decision.events[0].warning
    assert decision.status.reason == Reason.DRIFT_REVERTED and decision.status.phase is Phase.PROGRESSING
    assert w.alias == AliasRouting("1", "2", 0.1)
    assert not w.tick().actions  # one write per occurrence
    w.alias = AliasRouting("1")  # a new occurrence
    assert w.tick().actions and w.alias == AliasRouting("1", "2", 0.1)


def test_judging_a_hook_function_answer() -> None:
    assert judge_invocation(None, b'{"hook": "x"}').verdict is Verdict.SUCCESSFUL
    assert judge_invocation(None, b"").verdict is Verdict.SUCCESSFUL
    assert judge_invocation(None, b'{"status": "ok"}').verdict is Verdict.SUCCESSFUL
    failed = judge_invocation(None, b'{"status": "Failed", "reason": "db down"}')
    assert failed.verdict is Verdict.FAILED and "db down" in failed.reason
    error = judge_invocation("Unhandled", b'{"errorMessage": "boom"}')
    assert error.verdict is Verdict.FAILED and "Unhandled" in error.reason and "boom" in error.reason


def test_a_reverted_drift_leaves_a_trace_until_the_next_step() -> None:
    w = world(before=None, drift_policy="Revert")
    w.tick()
    w.now += 7
    w.alias = AliasRouting("1", "2", 0.5)
    decision = w.tick()
    entry = decision.record.history[-1]
    assert (entry.version, entry.outcome, entry.reason, entry.at) == ("2", "DriftReverted", "DriftReverted", w.now)
    assert entry.detail == "alias prod was version 1 at 50% + 2 at 50%; set back to version 1 at 90% + 2 at 10%"
    reverted = [e for e in decision.events if e.reason == Reason.DRIFT_REVERTED]
    assert len(reverted) == 1 and reverted[0].warning
    # The pause goes on (from the revert: it is never shortened) and the reason stays in view, with why.
    for _ in range(3):
        w.now += 10
        baking = w.tick()
        assert not baking.actions
        assert (baking.status.phase, baking.status.reason) == (Phase.PROGRESSING, Reason.DRIFT_REVERTED)
        assert "baking" in baking.status.message and "reverted (driftPolicy Revert)" in baking.status.message
    assert w.record is not None and w.record.history[-1].outcome == "DriftReverted"
    # The next step is the next transition: the reason moves on, the history keeps the revert.
    w.now += 60
    final = w.settle()
    assert final.status.reason == Reason.PROMOTED
    assert [h.outcome for h in final.record.history] == ["DriftReverted", "Promoted"]


def test_a_reverted_drift_of_a_healthy_alias_stays_the_reason() -> None:
    w = world(AllAtOnceStrategy(), before=None, drift_policy="Revert")
    w.settle()
    w.alias = AliasRouting("1")
    decision = w.settle()
    assert w.alias == AliasRouting("2")
    assert decision.record.history[-1].detail == "alias prod was version 1 at 100%; set back to version 2 at 100%"
    w.now += 100
    later = w.tick()
    assert (later.status.phase, later.status.reason) == (Phase.HEALTHY, Reason.DRIFT_REVERTED)
