"""``get NAME --watch``: the live view drawn frame by frame, and ``--until-done`` as a CI gate.

The frames are drawn with the real reads (``Watcher``) on rich's recording console while a real
Engine moves the rollout, and what they show is compared with the alias and the alarms read from
the emulator. ``--until-done`` runs as users run it: a subprocess whose stdout is not a terminal.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from rich.console import Console

from controller.commands.control import control
from controller.commands.watch import Watcher, watch
from controller.core.types import Phase
from controller.emulator import Emulator
from controller.observability.view import render
from controller.sources.files import FileSource
from tests.integration.helpers import (
    CLI,
    EngineHarness,
    alias_routing,
    canary,
    cli_env,
    phase_is,
    put_errors_alarm,
    rollout_document,
    seed_alias,
    write_document,
)

FUNCTION, ALIAS, ALARM = "orders", "live", "orders-errors"
TRAFFIC = re.compile(r"stable (\S+): ([\d.]+)%(?: \| canary (\S+): ([\d.]+)%)?")


def seed(aws: Emulator, source: Path, *, name: str = "orders", function: str = FUNCTION) -> None:
    seed_alias(aws, function, alias=ALIAS)
    put_errors_alarm(aws.client("cloudwatch"), ALARM, Threshold=5, ComparisonOperator="GreaterThanThreshold")
    document = rollout_document(name, function=function, version="2", strategy=canary(10, 5, 50, 5), alarms=[ALARM])
    write_document(source, document)


def shown_traffic(text: str) -> tuple[str, dict[str, float]]:
    """The alias's (primary, {additional: weight}) as the frame shows it."""
    match = TRAFFIC.search(text)
    assert match, text
    stable, _, canary_version, canary_percent = match.groups()
    return stable, ({canary_version: float(canary_percent) / 100} if canary_version else {})


def test_watch_frames_show_the_weights_on_the_alias_while_a_rollout_moves(aws: Emulator, tmp_path: Path) -> None:
    seed(aws, tmp_path)
    h = EngineHarness(aws, tmp_path)
    watcher = Watcher(h.aws, name="orders", specs=FileSource(tmp_path).scan().rollouts, clock=h.clock)
    frames: list[str] = []
    try:
        for _ in range(12):
            h.tick(2)
            console = Console(record=True, width=120, color_system=None)
            console.print(render(h.run(watcher.snapshot())))
            frame = console.export_text()
            frames.append(frame)
            assert shown_traffic(frame) == alias_routing(aws, FUNCTION, ALIAS)
            state = aws.client("cloudwatch").describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"]
            assert re.search(rf"{ALARM}\s+{state}", frame), frame
            if h.status("orders").phase is Phase.HEALTHY:
                break
        # The Live screen, as on a terminal: --until-done ends it at once on a Healthy rollout.
        terminal = Console(record=True, width=120, force_terminal=True, color_system=None)
        done = h.run(watch(watcher, console=terminal, live=True, until_done=True, interval=0.01, timeout=5))
        assert done == 0 and "stable 2: 100%" in terminal.export_text()
    finally:
        h.close()
    splits = [shown_traffic(f) for f in frames]
    assert ("1", {"2": 0.1}) in splits and ("1", {"2": 0.5}) in splits and splits[-1] == ("2", {})
    baking = next(f for f in frames if "stable 1: 90% | canary 2: 10%" in f)
    assert re.search(r"pause\s+[0-5]s left of 5s", baking) and "step 2/5" in baking
    assert "Healthy" in frames[-1] and "step 5/5" in frames[-1]


def test_until_done_exit_codes_for_a_healthy_and_a_rolled_back_rollout(aws: Emulator, tmp_path: Path) -> None:
    seed(aws, tmp_path)
    seed(aws, tmp_path, name="payments", function="payments")
    h = EngineHarness(aws, tmp_path)

    def gate(name: str) -> subprocess.Popen[str]:
        args = ["get", name, "--watch", "--until-done", "--source", str(tmp_path), "--interval", "0.05"]
        return subprocess.Popen(
            [*CLI, *args, "--timeout", "60", "--log-format", "text"],
            env=cli_env(aws),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    healthy, rolled_back = gate("orders"), gate("payments")
    try:
        h.tick()
        h.tick(1)
        h.run(control(h.aws, verb="abort", name="payments"))
        deadline = time.monotonic() + 60
        while healthy.poll() is None or rolled_back.poll() is None:
            assert time.monotonic() < deadline, "the gates did not finish"
            if not phase_is(h, "orders", Phase.HEALTHY)():
                h.tick(3)
            time.sleep(0.1)
        out, err = healthy.communicate()
        assert healthy.returncode == 0, err
        lines = out.splitlines()
        assert "Healthy" in lines[-1] and "stable 2: 100%" in lines[-1]
        assert len(lines) == len(set(lines)) <= 12  # one line per change, not one per refresh
        out, err = rolled_back.communicate()
        assert rolled_back.returncode == 1, err
        assert "RolledBack" in out.splitlines()[-1] and "Aborted" in out.splitlines()[-1]
    finally:
        for proc in (healthy, rolled_back):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        h.close()
