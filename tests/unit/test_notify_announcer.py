"""The notifier's side of the announcer seam: outbox entries offered once, done when every target is,
and a ``spec.notifications`` name the config lacks said once in the log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from controller.core.announce import transition_id
from controller.core.types import Announcement, Record, Trigger
from controller.document.model import CanaryStrategy, Pause, SetWeight
from controller.notify.announcer import NotifierAnnouncer
from controller.notify.delivery import Notifier
from tests.unit.simulator import api_spec
from tests.unit.test_notify_delivery import Clock, ScriptedChannel, config

SPEC = api_spec(CanaryStrategy((SetWeight(10), Pause(None))))


def record(*triggers: Trigger) -> Record:
    """A record whose outbox holds ``triggers`` of attempt "2@1", with the ids the core gives them."""
    entries = tuple(
        Announcement(
            id=transition_id(SPEC.key, attempt="2@1", trigger=trigger.value),
            trigger=trigger,
            attempt="2@1",
            at=1.0,
            version="2",
        )
        for trigger in triggers
    )
    return Record(stable="1", canary="2", outbox=entries)


def announcer_for(*names: str) -> tuple[NotifierAnnouncer, Notifier, list[ScriptedChannel]]:
    clock = Clock()
    channels = [ScriptedChannel(name) for name in names]
    holder: list[NotifierAnnouncer] = []
    notifier = Notifier(
        config=config(*names),
        channels=channels,
        on_finished=lambda ident, target, outcome: holder[0].finished(ident, target, outcome),
        clock=clock,
        sleep=clock.sleep,
        rand=lambda: 0.0,
    )
    holder.append(NotifierAnnouncer(notifier, config(*names), clock=clock))
    return holder[0], notifier, channels


async def test_an_entry_is_done_once_every_target_is_and_is_never_offered_twice() -> None:
    announcer, notifier, (a, b) = announcer_for("a", "b")
    started = record(Trigger.STARTED)
    (ident,) = (entry.id for entry in started.outbox)
    announcer.offer(SPEC, started)
    announcer.offer(SPEC, started)  # the next reconcile hands over the same outbox
    assert announcer.done(SPEC.key) == frozenset()
    async with notifier:
        await asyncio.wait_for(notifier.idle(), 5)
    assert announcer.done(SPEC.key) == {ident}
    assert a.delivered == b.delivered == [ident]
    announcer.offer(SPEC, started)  # done, still in the record until the next decide: not again
    assert notifier.pending() == ()
    announcer.forgotten(SPEC.key, [ident])  # the record no longer carries it
    assert announcer.done(SPEC.key) == frozenset()


async def test_an_entry_is_not_done_while_one_target_still_owes_it() -> None:
    announcer, notifier, (a, b) = announcer_for("a", "b")
    b.gate.clear()  # b's receiver hangs
    announcer.offer(SPEC, record(Trigger.STARTED))
    async with notifier:
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(a.delivered) == 1 and b.delivered == []
        assert announcer.done(SPEC.key) == frozenset()
        b.gate.set()
        await asyncio.wait_for(notifier.idle(), 5)
    assert len(announcer.done(SPEC.key)) == 1


def test_a_name_the_config_lacks_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    announcer, _, _ = announcer_for("ops")
    spec = dataclasses.replace(SPEC, notifications=("ops", "teem"))
    with caplog.at_level(logging.WARNING, logger="controller.notify.announcer"):
        for _ in range(3):
            announcer.offer(spec, record())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "teem" in warnings[0] and "known: ops" in warnings[0] and "'ops'" not in warnings[0]


def test_known_names_are_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    announcer, _, _ = announcer_for("ops")
    with caplog.at_level(logging.WARNING, logger="controller.notify.announcer"):
        announcer.offer(dataclasses.replace(SPEC, notifications=("ops",)), record())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
