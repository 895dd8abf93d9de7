"""Shared fixtures for integration tests: one strict AWS emulator per xdist worker, a GitOps folder, an engine.

Starting moto is the slow part, so each worker process starts one emulator (on a free port)
for the whole session, and ``aws`` wipes its state before each test that uses it. ``docs`` and
``harness`` are the folder of rollout documents and the engine driven over it that most engine tests
share; a module needing another engine (a clock, a gate, an ownership policy) overrides ``harness``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.emulator import Emulator, EmulatorSettings
from tests.integration.helpers import EMULATOR_SETTINGS, EngineHarness


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0, settings=EmulatorSettings(**EMULATOR_SETTINGS))
    yield emu
    emu.stop()


@pytest.fixture
def aws(emulator: Emulator) -> Emulator:
    """The session emulator with all AWS state, the call log and default timings reset."""
    emulator.reset()
    emulator.configure(**EMULATOR_SETTINGS)
    return emulator


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """An empty folder for the test's rollout documents (the engine's GitOps source)."""
    path = tmp_path / "rollouts"
    path.mkdir()
    return path


@pytest.fixture
def harness(aws: Emulator, docs: Path) -> Iterator[EngineHarness]:
    """An engine over ``docs``, driven tick by tick on a fake clock."""
    with EngineHarness(aws, docs) as h:
        yield h
