"""decide(): reserved concurrency, async config and provisioned concurrency, as declared.

Plain settings converge (a hand-made change is set back whenever they are read); provisioned
concurrency is put on version qualifiers, the new version is warm before its first traffic, and
what a rollout is done with is released. Driven through the pure simulator (tests/unit/simulator.py).
"""

from __future__ import annotations

import dataclasses

from controller.commands.get import Row, row_from_status
from controller.core.reasons import Reason
from controller.core.types import (
    AliasRouting,
    DeleteProvisionedConcurrency,
    EventInvokeConfig,
    Phase,
    PutEventInvokeConfig,
    PutProvisionedConcurrency,
    PutReservedConcurrency,
    UpdateAlias,
    Verb,
    VersionInfo,
)
from controller.document.model import (
    AllAtOnceStrategy,
    Analysis,
    AsyncInvoke,
    CanaryStrategy,
    Concurrency,
    Pause,
    PresetStrategy,
    SetWeight,
)
from tests.unit.simulator import World, api_spec, versions

DLQ = "arn:aws:sqs:us-east-1:123456789012:dlq"
ASYNC = AsyncInvoke(maximum_retry_attempts=1, maximum_event_age_seconds=3600, on_failure=DLQ)
CANARY = CanaryStrategy((SetWeight(10), Pause(60), SetWeight(50), Pause(60)))


def make_world(
    *,
    provisioned: int | None = 5,
    reserved: int | None = None,
    timeout: float = 120.0,
    warm_delay: float = 30.0,
    strategy: object = CANARY,
    async_invoke: AsyncInvoke | None = None,
) -> World:
    concurrency = Concurrency(reserved=reserved, provisioned=provisioned, warmup_timeout=timeout)
    spec = api_spec(
        strategy,  # type: ignore[arg-type]
        analysis=Analysis(alarms=("errors",)),
        concurrency=concurrency,
        async_invoke=async_invoke,
    )
    return World(spec=spec, alias=AliasRouting("1"), versions=versions("1", "2", "3"), warm_delay=warm_delay)


def alias_writes(world: World) -> list[AliasRouting]:
    return [w.action.write.routing for w in world.writes]


def provisioned(world: World) -> dict[str, int]:
    return {q: requested for q, (requested, _) in world.provisioned.items()}


# ---- provisioned concurrency: warm before traffic --------------------------------------------------


def test_the_new_version_is_warm_before_its_first_traffic() -> None:
    world = make_world()
    first = world.tick()
    # Both versions get the declared value on their version qualifier; no traffic moves yet.
    assert first.actions == (PutProvisionedConcurrency("1", 5), PutProvisionedConcurrency("2", 5))
    assert first.status.reason == Reason.WARMING and first.status.phase is Phase.PROGRESSING
    assert first.status.warmup is not None
    assert (first.status.warmup.version, first.status.warmup.allocated, first.status.warmup.requested) == ("2", 0, 5)
    assert "0/5 allocated" in first.status.message

    waiting = world.run_for(25, step=5)
    assert not waiting.actions and world.writes == []
    assert waiting.status.reason == Reason.WARMING
    # Waiting changes nothing durable: the progress is in the status, not in the record.
    assert not waiting.record_changed and "allocated" not in waiting.record.message

    world.now += 10  # READY 30 s after the put
    shifted = world.tick()
    assert [type(a) for a in shifted.actions] == [UpdateAlias]
    assert alias_writes(world) == [AliasRouting("1", "2", 0.1)]
    assert world.is_warm("2")
    assert shifted.status.warmup is None


def test_warm_up_time_does_not_count_against_the_progress_deadline() -> None:
    world = make_world(timeout=300.0, warm_delay=200.0)
    world.with_spec(progress_deadline=60.0)
    world.tick()
    decision = world.run_for(150, step=10)
    assert decision.status.reason == Reason.WARMING
    world.run_for(60, step=10)
    assert alias_writes(world) == [AliasRouting("1", "2", 0.1)]


def test_warm_up_timeout_degrades_moves_no_traffic_and_releases_the_canary() -> None:
    world = make_world(timeout=60.0, warm_delay=1_000.0)
    world.tick()
    assert provisioned(world) == {"1": 5, "2": 5}
    world.now += 61
    decision = world.tick()
    assert decision.status.phase is Phase.DEGRADED
    assert decision.status.reason == Reason.WARMUP_TIMEOUT
    assert "not warm after 60s" in decision.status.message
    assert DeleteProvisionedConcurrency("2") in decision.actions
    assert world.writes == []  # no alias write: the canary never had traffic
    assert provisioned(world) == {"1": 5}  # nothing leaked; stable keeps its capacity
    assert decision.record.history[-1].reason == Reason.WARMUP_TIMEOUT
    # The version is not tried again by itself.
    for _ in range(3):
        world.now += 600
        assert not world.tick().actions
    assert world.record is not None and world.record.canary is None


def test_promotion_keeps_the_new_version_warm_and_releases_the_old_one() -> None:
    world = make_world(strategy=AllAtOnceStrategy(), warm_delay=10.0)
    world.tick()
    world.now += 11
    world.settle()
    assert world.alias == AliasRouting("2")
    assert world.record is not None and world.record.phase is Phase.HEALTHY
    assert provisioned(world) == {"2": 5}
    # A finished rollout keeps its version's provisioned concurrency at the declared value.
    world.provisioned["2"] = (1, world.now)  # changed by hand
    world.now += 600
    assert world.tick().actions == (PutProvisionedConcurrency("2", 5),)
    assert not world.tick().actions


def test_a_rollback_releases_the_canary() -> None:
    world = make_world(warm_delay=1.0)
    world.tick()
    world.now += 2
    world.tick()
    assert world.alias == AliasRouting("1", "2", 0.1)
    world.alarms = frozenset({"errors"})
    # Without any read (the rollback tick reads only the alias), the release follows the alias write.
    decision = world.tick(read=False)
    assert isinstance(decision.actions[0], UpdateAlias) and decision.actions[0].rollback
    assert DeleteProvisionedConcurrency("2") in decision.actions
    assert provisioned(world) == {"1": 5}


def test_a_leftover_config_is_released_on_the_next_read() -> None:
    world = make_world(strategy=AllAtOnceStrategy(), warm_delay=1.0)
    world.tick()
    world.now += 2
    world.settle()
    world.provisioned["1"] = (5, world.now)  # e.g. a crash between the promotion and the release
    world.provisioned["7"] = (3, world.now)  # a version this rollout never touched: not ours
    decision = world.tick()
    assert decision.actions == (DeleteProvisionedConcurrency("1"),)
    assert provisioned(world) == {"2": 5, "7": 3}


def test_provisioned_concurrency_is_only_ever_put_on_versions() -> None:
    world = make_world(warm_delay=1.0)
    world.run_for(400, step=7)
    puts = [
        a for _, a in world.settings_writes if isinstance(a, PutProvisionedConcurrency | DeleteProvisionedConcurrency)
    ]
    assert puts and all(a.qualifier.isdigit() for a in puts)


def test_promote_full_is_the_documented_bypass() -> None:
    world = make_world(warm_delay=1_000.0)
    world.tick()
    world.ask(Verb.PROMOTE_FULL)
    world.settle()
    assert world.alias == AliasRouting("2")


# ---- plain declared settings ----------------------------------------------------------------------


def test_reserved_and_async_converge_and_a_manual_change_is_set_back() -> None:
    world = make_world(provisioned=None, reserved=20, async_invoke=ASYNC)
    world.alias = AliasRouting("2")  # nothing to roll out: only settings
    first = world.tick()
    wanted = EventInvokeConfig(maximum_retry_attempts=1, maximum_event_age_seconds=3600, on_failure=DLQ)
    assert first.actions == (PutReservedConcurrency(20), PutEventInvokeConfig("prod", wanted))
    assert world.reserved == 20 and world.event_invoke == wanted
    assert not world.tick().actions

    world.reserved = 500
    world.event_invoke = dataclasses.replace(wanted, maximum_retry_attempts=2)
    # Not read this tick (they are read on a spec change and on the slow drift check): nothing yet.
    assert not world.tick(read=False).actions
    back = world.tick()
    assert back.actions == (PutReservedConcurrency(20), PutEventInvokeConfig("prod", wanted))
    assert world.reserved == 20 and world.event_invoke == wanted


def test_a_removed_field_is_no_longer_managed() -> None:
    world = make_world(provisioned=None, reserved=20, async_invoke=ASYNC)
    world.alias = AliasRouting("2")
    world.tick()
    world.with_spec(concurrency=None, async_invoke=None)
    world.reserved, world.event_invoke = 3, None
    assert not world.tick().actions
    assert world.reserved == 3


def test_role_mismatch_is_invalid_and_writes_nothing_even_with_settings_declared() -> None:
    world = make_world(reserved=50, async_invoke=ASYNC)
    world.versions["2"] = VersionInfo("2", role="another-role")
    decision = world.tick()
    assert decision.status.phase is Phase.INVALID
    assert decision.status.reason == Reason.INCOMPATIBLE_VERSIONS
    assert decision.actions == ()
    assert world.settings_writes == [] and world.writes == []


# ---- transient text stays out of the record --------------------------------------------------------


def test_a_pause_countdown_is_shown_but_never_recorded() -> None:
    world = make_world(provisioned=None, strategy=PresetStrategy("Canary10Percent5Minutes"))
    world.tick()
    first = world.run_for(10, step=5)
    later = world.run_for(10, step=5)
    assert first.status.message != later.status.message
    assert "left" in later.status.message and "left" not in later.record.message
    assert not later.record_changed


def test_get_shows_the_warm_up_progress() -> None:
    world = make_world()
    status = world.tick().status
    row = row_from_status(Row(name="ns/api", function="api", alias="prod", phase=""), status)
    assert row.warmup == "0/5"
    assert "warming 0/5" in " ".join(row.cells())
