"""No missed transition, through the engine: an ALARM between two ticks rolls the canary back.

Poll mode finds it in the alarm history at the next tick; a pushed event (``Engine.alarm_changed``,
what the alarm-events consumer calls) wakes the engine at once, and the rollback's reaction time
says which of the two knew first. The instant belongs to the attempt it happened in: a ``retry``
starts afresh. The engine is driven tick by tick on a clock that starts at the wall clock's time
(CloudWatch stamps the alarm history with its own); alarms move only by ``SetAlarmState``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from controller.analysis.alarm_events import AlarmChange
from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from controller.runtime.sink import EVENT, POLL
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    canary,
    phase_is,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    send_request,
    set_alarm,
    write_document,
)

KEY = "default/pay"


@pytest.fixture
def paused(aws: Emulator, docs: Path) -> EngineHarness:
    """``pay`` at 10% on version 2, waiting for ``promote``, watching ``pay-errors`` (OK)."""
    aws.configure(alarm_evaluation=False)
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    write_document(
        docs, rollout_document("pay", function="pay", version="2", strategy=canary(10, None), alarms=["pay-errors"])
    )
    harness = EngineHarness(aws, docs)
    harness.drive(phase_is(harness, "pay", Phase.PAUSED), step=0.0, max_ticks=10)
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.1})
    return harness


def blip(aws: Emulator, seconds: float = 0.2) -> float:
    """ALARM for ``seconds``, then OK: between two ticks. Returns when it left ALARM (CloudWatch's clock)."""
    cw = aws.client("cloudwatch")
    set_alarm(cw, "pay-errors", "ALARM")
    time.sleep(seconds)
    set_alarm(cw, "pay-errors", "OK")
    items = cw.describe_alarm_history(AlarmName="pay-errors", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    return float(items[0]["Timestamp"].timestamp())


def test_an_alarm_between_two_ticks_rolls_back_at_the_next_one(aws: Emulator, paused: EngineHarness) -> None:
    with paused as harness:
        blip(aws)
        harness.tick(5.0)  # the next regular tick: DescribeAlarms says OK, the history says otherwise
        status = harness.status("pay")
        assert (status.phase, status.reason) == (Phase.ROLLED_BACK, "AlarmFired")
        assert "alarm pay-errors was in ALARM during this rollout (OK again since)" in status.message
        assert alias_routing(aws, "pay", "live") == ("1", {})
        rollback = harness.sink.writes[KEY][-1]
        assert rollback.rollback and rollback.reaction_source == POLL


def test_the_instant_belongs_to_its_attempt_and_a_retry_starts_afresh(aws: Emulator, paused: EngineHarness) -> None:
    with paused as harness:
        blip(aws)
        harness.tick(5.0)
        assert harness.status("pay").phase is Phase.ROLLED_BACK
        send_request(aws, "pay", "live", Verb.RETRY)
        harness.tick(1.0)
        harness.drive(phase_is(harness, "pay", Phase.PAUSED), step=5.0, max_ticks=5)
        for _ in range(3):  # the history still has the blip: it happened before this attempt began
            harness.tick(5.0)
        assert harness.status("pay").phase is Phase.PAUSED
        assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.1})


def test_a_pushed_event_wakes_the_running_engine_and_the_reaction_says_event(
    aws: Emulator, docs: Path, paused: EngineHarness
) -> None:
    seed_alias(aws, "idle")
    put_hand_alarm(aws.client("cloudwatch"), "idle-errors")
    write_document(
        docs, rollout_document("idle", function="idle", version="1", strategy=canary(10, None), alarms=["idle-errors"])
    )
    with paused as harness:
        harness.reload()
        harness.tick(0.0)
        assert harness.status("idle").phase is Phase.HEALTHY
        left = blip(aws)
        change = AlarmChange(
            name="pay-errors", state="OK", previous="ALARM", at=left, reason="test", received_at=time.time()
        )

        idle = AlarmChange(
            name="idle-errors", state="ALARM", previous="OK", at=time.time(), reason="test", received_at=time.time()
        )

        async def running() -> float:
            stop = asyncio.Event()
            loop = asyncio.create_task(harness.engine.run(stop=stop))  # ticks every 5 s (its interval)
            await asyncio.sleep(0.3)  # its first tick is done: it sleeps until the next one
            ticks = harness.engine.ticks
            harness.engine.alarm_changed(idle)  # watched only by a Healthy rollout: no tick of its own
            await asyncio.sleep(0.3)
            assert harness.engine.ticks == ticks
            began = time.monotonic()
            harness.engine.alarm_changed(change)
            while (await asyncio.to_thread(alias_routing, aws, "pay", "live")) != ("1", {}):
                assert time.monotonic() - began < 4.0, "not woken: waited for the regular tick"
                await asyncio.sleep(0.01)
            took = time.monotonic() - began
            stop.set()
            await loop
            return took

        took = harness.run(running())
        print(f"\npushed event -> alias restored: {took * 1000:.0f} ms")
        rollback = harness.sink.writes[KEY][-1]
        assert rollback.rollback and rollback.reaction_source == EVENT
        # The same event again tells nothing new: it would wake nothing.
        assert not harness.engine.alarms.pushed(change)
