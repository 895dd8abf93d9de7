"""decide(): first sight, pre-flight, walking a plan, alarms, deadlines, spec edits, write-ahead."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from controller.core.decide import confirm, decide, rebase
from controller.core.spec_hash import spec_hash
from controller.core.types import (
    AliasRouting,
    Observed,
    Phase,
    PublishVersion,
    Record,
    UpdateAlias,
    Verb,
    VersionInfo,
)
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    CanaryStrategy,
    LinearStrategy,
    Pause,
    PresetStrategy,
    Publish,
    RolloutSpec,
    SetWeight,
)
from tests.unit.simulator import World, api_spec, versions

CANARY5 = PresetStrategy("Canary10Percent5Minutes")


def make_spec(version: str | None = "2", strategy: object = CANARY5, **kw: object) -> RolloutSpec:
    return api_spec(
        strategy,  # type: ignore[arg-type]
        version=version,
        analysis=Analysis(alarms=("errors",)),
        **kw,
    )


def world(spec: RolloutSpec | None = None, alias: str | None = "1") -> World:
    return World(
        spec=spec or make_spec(),
        alias=AliasRouting(alias) if alias else None,
        versions=versions("1", "2", "3"),
    )


def alias_writes(w: World) -> list[AliasRouting]:
    return [x.action.write.routing for x in w.writes if x.action.write.alias == "prod"]


# ---- first sight --------------------------------------------------------------------------------


def test_first_sight_without_reading_the_alias_asks_for_it() -> None:
    d = decide(make_spec(), None, Observed(), 0.0)
    assert d.read_alias and not d.actions and not d.record_changed
    assert d.status.phase is Phase.PENDING


def test_missing_alias_is_created_on_the_desired_version() -> None:
    w = world(alias=None)
    d = w.tick()
    assert d.actions == (UpdateAlias(d.actions[0].write, create=True),)  # type: ignore[union-attr]
    assert w.alias == AliasRouting("2")
    assert d.status.phase is Phase.HEALTHY
    assert not w.tick().actions


def test_alias_already_on_desired_is_adopted() -> None:
    w = world(alias="2")
    d = w.tick()
    assert not d.actions and d.record_changed
    assert d.status.phase is Phase.HEALTHY and d.status.reason == "Adopted"


def test_foreign_weights_on_first_sight_hold_without_writing() -> None:
    w = world()
    w.alias = AliasRouting("1", "3", 0.5)
    d = w.tick()
    assert not d.actions and not d.record_changed
    assert d.status.reason == "AliasDrift" and d.events


# ---- pre-flight ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "reason"),
    [
        (Observed(function_exists=False), "FunctionNotFound"),
        (Observed(alias_read=True, alias=AliasRouting("1"), missing_versions=frozenset({"2"})), "VersionNotFound"),
        (Observed(alias_read=True, alias=AliasRouting("1"), missing_alarms=frozenset({"errors"})), "AlarmNotFound"),
        (Observed(alias_read=True, alias=AliasRouting("$LATEST")), "StableIsLatest"),
        (
            Observed(
                alias_read=True,
                alias=AliasRouting("1"),
                versions={"1": VersionInfo("1", "role-a"), "2": VersionInfo("2", "role-b")},
            ),
            "IncompatibleVersions",
        ),
        (
            Observed(
                alias_read=True,
                alias=AliasRouting("1"),
                versions={"1": VersionInfo("1", "r", "arn:q1"), "2": VersionInfo("2", "r", "arn:q2")},
            ),
            "IncompatibleVersions",
        ),
    ],
)
def test_preflight_is_invalid_and_changes_nothing(observed: Observed, reason: str) -> None:
    record = Record(spec_hash="x", stable="1", phase=Phase.HEALTHY)
    for rec in (None,) if reason == "StableIsLatest" else (None, record):
        d = decide(make_spec(), rec, observed, 10.0)
        assert d.actions == ()
        assert d.status.phase is Phase.INVALID and d.status.reason == reason and d.status.message
        assert not d.record_changed


def test_publish_first() -> None:
    spec = make_spec(version=None, publish=Publish(code_sha256="abc123"))
    w = world(spec)
    d = w.tick()
    assert d.actions == (PublishVersion("abc123"),)
    assert w.published == "4"
    d = w.tick()
    assert w.record is not None and w.record.canary == "4"


# ---- walking a plan ------------------------------------------------------------------------------


def test_canary_preset_walks_and_promotes() -> None:
    w = world()
    d = w.tick()
    assert alias_writes(w) == [AliasRouting("1", "2", 0.1)]
    assert d.requeue_after == 300 and d.status.phase is Phase.PROGRESSING
    w.now += 299
    d = w.tick()
    assert not d.actions and d.status.reason == "Baking" and d.requeue_after == pytest.approx(1)
    w.now += 1
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("2")
    assert d.status.phase is Phase.PROMOTING
    d = w.tick()
    assert d.status.phase is Phase.HEALTHY and d.record.stable == "2" and d.record.canary is None
    assert d.record.previous_stable == "1"
    assert [h.outcome for h in d.record.history] == ["Promoted"]
    for _ in range(5):
        w.now += 1000
        assert not w.tick().actions


def test_linear_every_minute() -> None:
    w = world(make_spec(strategy=PresetStrategy("Linear10PercentEvery1Minute")))
    w.run_for(60 * 10, step=5)
    weights = [r.weight for r in alias_writes(w)]
    assert weights == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.0])
    assert alias_writes(w)[-1] == AliasRouting("2")
    times = [x.at for x in w.writes]
    assert all(b - a >= 60 for a, b in itertools.pairwise(times))


def test_all_at_once() -> None:
    w = world(make_spec(strategy=AllAtOnceStrategy()))
    w.settle()
    assert alias_writes(w) == [AliasRouting("2")]
    assert w.tick().status.phase is Phase.HEALTHY


def test_indefinite_pause_waits_for_promote() -> None:
    w = world(make_spec(strategy=CanaryStrategy((SetWeight(20), Pause()))))
    w.tick()
    w.now += 10_000
    d = w.tick()
    assert d.status.phase is Phase.PAUSED and d.status.reason == "WaitingForPromote" and not d.actions
    w.ask(Verb.PROMOTE)
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("2")


def test_spec_paused_holds_and_resuming_restarts_the_bake() -> None:
    w = world()
    w.tick()
    w.with_spec(paused=True)
    w.now += 1000
    d = w.tick()
    assert d.status.phase is Phase.PAUSED and d.status.reason == "PausedBySpec" and not d.actions
    w.with_spec(paused=False)
    d = w.tick()
    assert not d.actions and d.status.phase is Phase.PROGRESSING
    w.now += 299
    assert not w.tick().actions
    w.now += 1
    assert w.tick().actions


def test_paused_still_rolls_back_on_alarm() -> None:
    w = world(make_spec(paused=False))
    w.tick()
    w.with_spec(paused=True)
    w.alarms = frozenset({"errors"})
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1")
    assert d.status.phase is Phase.ROLLED_BACK and d.status.reason == "AlarmFired" and "errors" in d.status.message


# ---- failures ---------------------------------------------------------------------------------------


def test_alarm_rolls_back_and_never_retries_by_itself() -> None:
    w = world()
    w.tick()
    w.alarms = frozenset({"errors", "unwatched"})
    d = w.tick()
    action = d.actions[0]
    assert isinstance(action, UpdateAlias) and action.rollback
    assert d.status.reason == "AlarmFired" and "errors" in d.status.message and "unwatched" not in d.status.message
    assert d.record.failed[0].version == "2" and d.record.history[-1].outcome == "RolledBack"
    w.alarms = frozenset()
    for _ in range(3):
        w.now += 10_000
        d = w.tick()
        assert not d.actions and d.status.phase is Phase.ROLLED_BACK and "retry" in d.status.message
        assert "errors" in d.status.message  # the reminder still names the alarm


def test_an_alarm_in_alarm_between_two_polls_rolls_back_the_attempt_it_happened_in() -> None:
    w = world()
    w.tick()
    assert w.record is not None and w.record.started_at == 1_000.0
    w.now += 30
    w.alarm_instants = {"errors": w.now - 10, "unwatched": w.now}  # OK again by this poll
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1")
    assert (d.status.phase, d.status.reason) == (Phase.ROLLED_BACK, "AlarmFired")
    assert "alarm errors was in ALARM during this rollout (OK again since)" in d.status.message
    assert "unwatched" not in d.status.message


def test_both_kinds_of_alarm_are_named() -> None:
    w = world()
    w.with_spec(analysis=Analysis(alarms=("errors", "latency")))
    w.tick()
    w.alarms, w.alarm_instants = frozenset({"latency"}), {"errors": w.now, "latency": w.now}
    message = w.tick().status.message
    assert message.startswith("alarm latency in ALARM; alarm errors was in ALARM during this rollout")


@pytest.mark.parametrize(
    ("offset", "rolls_back"),
    [(-0.001, False), (0.0, True), (0.001, True)],
)
def test_an_alarm_instant_counts_from_the_attempts_start_inclusive(offset: float, rolls_back: bool) -> None:
    w = world()
    w.tick()
    assert w.record is not None and w.record.started_at is not None
    w.alarm_instants = {"errors": w.record.started_at + offset}
    w.now += 30
    assert (w.tick().status.phase is Phase.ROLLED_BACK) is rolls_back


def test_an_alarm_instant_of_an_earlier_attempt_never_counts_for_the_next_one() -> None:
    w = world()
    w.tick()
    w.now += 5
    w.alarm_instants = {"errors": w.now}
    assert w.tick().status.reason == "AlarmFired"
    w.now += 60
    w.ask(Verb.RETRY)  # the instant stays known (the history keeps it): it belongs to the last attempt
    d = w.tick()
    assert d.status.phase is Phase.PROGRESSING and alias_writes(w)[-1] == AliasRouting("1", "2", 0.1)
    w.now += 30
    assert w.tick().status.phase is Phase.PROGRESSING
    # Nothing in flight: an instant says nothing about a Healthy rollout either.
    healthy = world(make_spec(version="1"))
    healthy.alarm_instants = {"errors": healthy.now}
    assert healthy.tick().status.phase is Phase.HEALTHY


def test_the_emergency_bypass_ignores_alarm_instants_too() -> None:
    w = world()
    w.tick()
    w.ask(Verb.PROMOTE_BYPASS)
    w.alarm_instants = {"errors": w.now}
    w.now += 1
    w.tick()
    assert alias_writes(w)[-1] == AliasRouting("2")


def test_retry_and_spec_change_restart_a_failed_version() -> None:
    w = world()
    w.tick()
    w.alarms = frozenset({"errors"})
    w.tick()
    w.alarms = frozenset()
    w.ask(Verb.RETRY)
    w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1", "2", 0.1)
    w.alarms = frozenset({"errors"})
    w.tick()
    w.alarms = frozenset()
    w.with_spec(analysis=Analysis(alarms=("errors", "latency")))
    w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1", "2", 0.1)


def test_progress_deadline() -> None:
    w = world(make_spec(progress_deadline=600))
    w.tick(crash="before-write")  # the shell keeps failing to make the write (throttled, say)
    assert w.record is not None and w.record.pending is not None
    w.now += 600
    assert w.tick(crash="before-write").actions[0].rollback is False  # type: ignore[union-attr]
    w.now += 1
    d = w.tick()
    assert d.status.phase is Phase.DEGRADED and d.status.reason == "ProgressDeadlineExceeded"
    assert d.record.failed and d.record.history[-1].outcome == "Degraded"
    assert w.alias == AliasRouting("1") and not d.actions  # the weight never reached the alias


def test_deadline_does_not_count_the_bake_or_indefinite_pauses() -> None:
    w = world(
        make_spec(strategy=CanaryStrategy((SetWeight(10), Pause(900), SetWeight(20), Pause())), progress_deadline=60)
    )
    w.run_for(900 + 5000, step=30)
    assert w.record is not None and w.record.phase is Phase.PAUSED and w.record.weight == 20


# ---- spec edits ---------------------------------------------------------------------------------


def test_third_version_supersedes() -> None:
    w = world()
    w.tick()
    w.with_spec(version="3")
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1") and d.requeue_after == 0
    assert d.record.history[-1].outcome == "Superseded" and not d.record.failed
    w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1", "3", 0.1)


def test_spec_back_to_stable_is_a_fast_rollback_not_a_failure() -> None:
    w = world()
    w.tick()
    w.with_spec(version="1")
    d = w.tick()
    assert alias_writes(w)[-1] == AliasRouting("1")
    assert d.status.phase is Phase.HEALTHY and d.status.reason == "SpecReverted"
    assert not d.record.failed and d.record.history[-1].outcome == "Aborted"
    assert not w.tick().actions


def test_strategy_edit_rebases_without_lowering_weight() -> None:
    plan = (SetWeight(10), Pause(60), SetWeight(30), Pause(60), SetWeight(50), Pause(60))
    assert rebase(plan, 0) == 0
    assert rebase(plan, 10) == 1
    assert rebase(plan, 20) == 1
    assert rebase(plan, 30) == 3
    assert rebase(plan, 50) == 5
    assert rebase(plan, 100) == 6


# ---- write-ahead -----------------------------------------------------------------------------------


def test_crash_before_write_reissues_the_same_write() -> None:
    w = world()
    d = w.tick(crash="before-write")
    assert w.record is not None and w.record.pending is not None and w.alias == AliasRouting("1")
    d2 = w.tick()
    assert d2.actions == d.actions
    assert w.alias == AliasRouting("1", "2", 0.1)


def test_crash_before_confirm_confirms_on_next_decide_and_measures_from_then() -> None:
    w = world()
    w.tick(crash="before-confirm")
    w.now += 100
    d = w.tick()
    assert not d.actions and d.record.pending is None and d.record.step_started_at == w.now
    w.now += 250
    assert not w.tick().actions  # 350s since the write, but only 250s since confirmation
    w.now += 50
    assert w.tick().actions


def test_confirm() -> None:
    rec = Record(pending=None, step_started_at=1.0)
    assert confirm(rec, 5.0).step_started_at == 5.0


def test_spec_hash_is_stable_and_shaped_by_the_right_fields() -> None:
    a = make_spec()
    assert spec_hash(a) == spec_hash(make_spec()) and len(spec_hash(a)) == 10
    assert spec_hash(a) != spec_hash(make_spec(version="3"))
    assert spec_hash(a) != spec_hash(make_spec(strategy=LinearStrategy(10, 60)))
    assert spec_hash(a) == spec_hash(make_spec(paused=True, progress_deadline=5))
    # Same in another process (no PYTHONHASHSEED dependence): it is stored on the function.
    code = (
        "from controller.document.model import *; from controller.core.spec_hash import spec_hash;"
        "print(spec_hash(RolloutSpec(namespace='ns', name='api', function_name='api', alias='prod',"
        "strategy=PresetStrategy('Canary10Percent5Minutes'), version='2', analysis=Analysis(alarms=('errors',)))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == spec_hash(a)
