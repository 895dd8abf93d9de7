"""The alarms provider against the strict emulator over HTTP: ALARM now, ALARM between two polls, pushed events.

An alarm that goes to ALARM and back between two polls is found in the alarm history (one read a
tick, at most once per interval) and counts for the attempts in flight from their start; a pushed
ALARM fires at once and holds until a poll begun after it has seen the alarm, so a late poll cannot
un-see it; an unreadable history is said once and the tick goes on. Alarms move only by
``SetAlarmState`` here (``TreatMissingData: ignore``, the evaluation timer stopped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from controller.analysis import Subject
from controller.analysis.alarm_check import CrossCheck, Mismatch
from controller.analysis.alarm_events import AlarmChange
from controller.analysis.alarms import OVERLAY_HOLD, AlarmsProvider
from controller.aws import AwsClients, AwsSettings, Budget, make_clients
from controller.core.types import Phase, Record
from controller.document.model import Analysis, PresetStrategy, RolloutSpec
from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from tests.integration.helpers import put_hand_alarm, set_alarm

FAST = {"cloudwatch.describe_alarms": 1000.0, "cloudwatch.describe_alarm_history": 1000.0}


@pytest.fixture
def manual(aws: Emulator) -> Emulator:
    aws.configure(alarm_evaluation=False)
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    put_hand_alarm(aws.client("cloudwatch"), "other-errors")
    return aws


@pytest.fixture
def clients(manual: Emulator) -> AwsClients:
    return make_clients(AwsSettings(endpoint_url=manual.url, region="us-east-1", max_attempts=1), budget=Budget(FAST))


def spec(name: str, alarms: tuple[str, ...] = ("pay-errors",)) -> RolloutSpec:
    return RolloutSpec(
        namespace="default",
        name=name,
        function_name=name,
        alias="live",
        strategy=PresetStrategy("Canary10Percent5Minutes"),
        version="2",
        analysis=Analysis(alarms=alarms),
    )


def in_flight(started_at: float) -> Record:
    return Record(phase=Phase.PROGRESSING, stable="1", canary="2", weight=10, started_at=started_at)


HEALTHY = Record(phase=Phase.HEALTHY, stable="1")


def measure(provider: AlarmsProvider, subjects: list[Subject], now: float | None = None) -> dict[str, Any]:
    evidence = asyncio.run(provider.measure(subjects, now=time.time() if now is None else now, wait=False))
    return {key: (sorted(found.firing), dict(found.alarm_instants)) for key, found in evidence.items()}


def operations(aws: Emulator) -> list[str]:
    return [c.operation for c in aws.calls()]


def change(name: str, state: str, previous: str, at: float) -> AlarmChange:
    return AlarmChange(name=name, state=state, previous=previous, at=at, reason="test", received_at=at + 0.01)


def test_an_alarm_in_alarm_between_two_polls_counts_from_each_attempts_start(
    manual: Emulator, clients: AwsClients
) -> None:
    cw = manual.client("cloudwatch")
    provider = AlarmsProvider(clients.cloudwatch, history_every=5.0)
    began = time.time()
    early, late, idle = spec("early"), spec("late"), spec("idle")
    subjects = [Subject(early, in_flight(began)), Subject(idle, HEALTHY)]
    assert measure(provider, subjects, now=began) == {
        "default/early": ([], {}),
        "default/idle": ([], {}),
    }
    set_alarm(cw, "pay-errors", "ALARM")
    set_alarm(cw, "pay-errors", "OK")  # OK again before the next poll: DescribeAlarms alone never sees it
    left = cw.describe_alarm_history(AlarmName="pay-errors", HistoryItemType="StateUpdate")["AlarmHistoryItems"][0]
    instant = left["Timestamp"].timestamp()
    later = [*subjects, Subject(late, in_flight(instant + 0.001))]  # started just after it: not its ALARM
    manual.clear_calls()
    found = measure(provider, later, now=began + 5.0)
    assert found == {
        "default/early": ([], {"pay-errors": instant}),
        "default/idle": ([], {}),
        "default/late": ([], {}),
    }
    # One state read and one history read for every rollout (and the new rollout's alarms checked once).
    assert sorted(operations(manual)) == ["DescribeAlarmHistory", "DescribeAlarms", "DescribeAlarms"]
    # A tick started early (an event, a hook's answer) does not read the history again; what it knows stays.
    manual.clear_calls()
    assert measure(provider, later, now=began + 6.0) == found
    assert "DescribeAlarmHistory" not in operations(manual)


def test_the_first_history_read_reaches_back_to_the_earliest_attempt_in_flight(
    manual: Emulator, clients: AwsClients
) -> None:
    cw = manual.client("cloudwatch")
    started = time.time() - 120  # an attempt a controller, now restarted, began two minutes ago
    set_alarm(cw, "pay-errors", "ALARM")  # ... and an ALARM while no controller ran
    set_alarm(cw, "pay-errors", "OK")
    manual.clear_calls()
    provider = AlarmsProvider(clients.cloudwatch, history_every=5.0)
    found = measure(provider, [Subject(spec("pay"), in_flight(started))])
    assert list(found["default/pay"][1]) == ["pay-errors"]
    # Nothing in flight: the history is of no use and not read at all.
    manual.clear_calls()
    assert measure(AlarmsProvider(clients.cloudwatch), [Subject(spec("pay"), HEALTHY)]) == {"default/pay": ([], {})}
    assert "DescribeAlarmHistory" not in operations(manual)


def test_a_pushed_alarm_fires_at_once_and_a_late_poll_cannot_unsee_it(manual: Emulator, clients: AwsClients) -> None:
    provider = AlarmsProvider(clients.cloudwatch, history_every=5.0)
    now = time.time()
    subjects = [Subject(spec("pay"), in_flight(now - 60)), Subject(spec("idle"), HEALTHY)]
    # The emulator says OK (the poll lags, or began before the change): the event says ALARM.
    assert provider.pushed(change("pay-errors", "ALARM", "OK", now))
    assert not provider.pushed(change("pay-errors", "ALARM", "OK", now))  # the same event again: no news
    assert measure(provider, subjects, now=now + 0.05) == {
        "default/pay": (["pay-errors"], {"pay-errors": now}),
        "default/idle": (["pay-errors"], {}),  # firing for every rollout that watches it
    }
    assert measure(provider, subjects, now=now + OVERLAY_HOLD - 0.1)["default/pay"][0] == ["pay-errors"]
    # A poll begun OVERLAY_HOLD after the event has seen the alarm since: OK, and the instant stays.
    assert measure(provider, subjects, now=now + OVERLAY_HOLD) == {
        "default/pay": ([], {"pay-errors": now}),
        "default/idle": ([], {}),
    }


def test_a_newer_change_ends_a_pushed_alarm_and_an_older_alarm_is_still_an_instant(
    manual: Emulator, clients: AwsClients
) -> None:
    provider = AlarmsProvider(clients.cloudwatch, history_every=5.0)
    now = time.time()
    subjects = [Subject(spec("pay"), in_flight(now - 60))]
    assert provider.pushed(change("pay-errors", "ALARM", "OK", now - 2))
    assert provider.pushed(change("pay-errors", "OK", "ALARM", now - 1))  # in ALARM until then
    assert measure(provider, subjects, now=now) == {"default/pay": ([], {"pay-errors": now - 1})}
    # Out of order: an ALARM older than the newest change happened, but is not "now".
    assert not provider.pushed(change("pay-errors", "ALARM", "OK", now - 3))
    assert measure(provider, subjects, now=now) == {"default/pay": ([], {"pay-errors": now - 1})}
    # A change that says nothing about ALARM is no news.
    assert not provider.pushed(change("other-errors", "INSUFFICIENT_DATA", "OK", now))


def test_an_unreadable_history_is_said_once_and_the_tick_goes_on(
    manual: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = FaultProxy.start(manual.url)
    try:
        clients = make_clients(
            AwsSettings(endpoint_url=proxy.url, region="us-east-1", max_attempts=1), budget=Budget(FAST)
        )
        provider = AlarmsProvider(clients.cloudwatch, history_every=0.0)
        cw = manual.client("cloudwatch")
        started = time.time()
        subjects = [Subject(spec("pay"), in_flight(started))]
        proxy.set_rules([FaultRule(action="error", service="cloudwatch", operation="DescribeAlarmHistory", status=503)])
        with caplog.at_level(logging.INFO, logger="controller.analysis.alarms"):
            assert measure(provider, subjects) == {"default/pay": ([], {})}
            set_alarm(cw, "pay-errors", "ALARM")
            set_alarm(cw, "pay-errors", "OK")
            assert measure(provider, subjects) == {"default/pay": ([], {})}
            proxy.set_rules([])
            found = measure(provider, subjects)  # from where the last good read would have begun: nothing skipped
        # The provider's own line (the AWS adapters say the 5xx answers too, in a line of their own).
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and r.name == "controller.analysis.alarms"
        ]
        assert len(warnings) == 1 and "cannot read the alarm history (ServiceUnavailable" in warnings[0]
        assert any(r.getMessage() == "the alarm history is readable again" for r in caplog.records)
        assert list(found["default/pay"][1]) == ["pay-errors"]
    finally:
        proxy.stop()


def test_the_cross_check_hears_both_streams(manual: Emulator, clients: AwsClients) -> None:
    mismatches: list[Mismatch] = []
    cw = manual.client("cloudwatch")
    provider = AlarmsProvider(clients.cloudwatch, history_every=0.0)
    provider.checker = CrossCheck(tolerance=0.5, on_mismatch=mismatches.append)
    provider.checker.consuming(time.time() - 10)
    subjects = [Subject(spec("pay", ("pay-errors", "other-errors")), HEALTHY)]  # read for the cross-check
    measure(provider, subjects)
    set_alarm(cw, "pay-errors", "ALARM")  # the history has it, and its event is delivered
    set_alarm(cw, "other-errors", "ALARM")  # the history has it, its event never comes
    history = cw.describe_alarm_history(AlarmName="pay-errors", HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    provider.pushed(change("pay-errors", "ALARM", "OK", history[0]["Timestamp"].timestamp()))
    forged = time.time()
    provider.pushed(change("forged-errors", "ALARM", "OK", forged))  # no poll ever sees this one
    measure(provider, [*subjects, Subject(spec("forged", ("forged-errors",)), HEALTHY)])
    time.sleep(1.2)  # past the tolerance, and a history read begun a SKEW after the forged instant
    measure(provider, [*subjects, Subject(spec("forged", ("forged-errors",)), HEALTHY)])
    assert sorted((m.kind.value, m.alarm) for m in mismatches) == [
        ("event_only", "forged-errors"),
        ("poll_only", "other-errors"),
    ]
