"""Crash safety of the real daemon: ``run`` killed with SIGKILL mid-pause, then started again.

The durable record on the function is the only memory the controller has, so a second process
must resume on the same step, keep the whole pause (measured on the emulator's clock, from the
alias write timestamps in its call log), never move a weight backwards, and SIGTERM must end it
cleanly. Real subprocesses, real (short) intervals.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from controller.emulator import Emulator
from tests.integration.helpers import (
    alias_routing,
    alias_writes,
    canary,
    cli_env,
    daemon,
    rollout_document,
    seed_alias,
    stop_with_sigterm,
    write_document,
)

pytestmark = pytest.mark.e2e

PAUSE = 3.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)
    yield emu
    emu.stop()


def run_daemon(emulator: Emulator, source: Path, log: Path) -> AbstractContextManager[subprocess.Popen[bytes]]:
    args = ["run", "--source", str(source), "--interval", "0.2", "--log-format", "text"]
    return daemon(args, env=cli_env(emulator), log=log)


class AliasWatcher:
    """Polls the alias and keeps every distinct routing seen, in order."""

    def __init__(self, emulator: Emulator, function: str, alias: str) -> None:
        self.emulator, self.function, self.alias = emulator, function, alias
        self.seen: list[tuple[str, dict[str, float]]] = []

    def until(self, routing: tuple[str, dict[str, float]], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = alias_routing(self.emulator, self.function, self.alias)
            if not self.seen or self.seen[-1] != current:
                self.seen.append(current)
            if current == routing:
                return
            time.sleep(0.05)
        raise AssertionError(f"alias never reached {routing}; seen {self.seen}")


def test_sigkill_mid_pause_resumes_on_the_same_step(emulator: Emulator, tmp_path: Path) -> None:
    emulator.reset()
    seed_alias(emulator, "resume")
    (tmp_path / "rollouts").mkdir()
    write_document(
        tmp_path / "rollouts",
        rollout_document("resume", function="resume", version="2", strategy=canary(20, PAUSE, 50, PAUSE)),
    )
    emulator.clear_calls()
    watcher = AliasWatcher(emulator, "resume", "live")

    source = tmp_path / "rollouts"
    with run_daemon(emulator, source, tmp_path / "first.log"):
        watcher.until(("1", {"2": 0.2}))
        time.sleep(PAUSE / 3)  # well inside the pause; leaving the block SIGKILLs the daemon

    with run_daemon(emulator, source, tmp_path / "second.log") as second:
        watcher.until(("2", {}))
        stop_with_sigterm(second)

    writes = alias_writes(emulator, "resume", "live")
    # 20% once (not re-applied after the restart), then 50%, then 100%: no step skipped or repeated.
    assert len(writes) == 3, [(w.operation, w.timestamp) for w in writes]
    assert writes[1].timestamp - writes[0].timestamp >= PAUSE
    assert writes[2].timestamp - writes[1].timestamp >= PAUSE
    weights = [routing[1].get("2", 1.0 if routing[0] == "2" else 0.0) for routing in watcher.seen]
    assert weights == sorted(weights), watcher.seen
