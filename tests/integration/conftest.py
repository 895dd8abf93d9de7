"""Shared fixtures for integration tests: one strict AWS emulator per xdist worker.

Starting moto is the slow part, so each worker process starts one emulator (on a free port)
for the whole session, and ``aws`` wipes its state before each test that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.emulator import Emulator, EmulatorSettings


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(
        port=0,
        settings=EmulatorSettings(provisioned_concurrency_delay=0.3, alarm_evaluation_interval=0.2),
    )
    yield emu
    emu.stop()


@pytest.fixture
def aws(emulator: Emulator) -> Emulator:
    """The session emulator with all AWS state, the call log and default timings reset."""
    emulator.reset()
    emulator.configure(provisioned_concurrency_delay=0.3, alarm_evaluation_interval=0.2)
    return emulator
