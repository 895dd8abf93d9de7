"""Cold start at AWS's quota: N new rollouts, the controller against a naive per-rollout poller.

One run prints, side by side, for N = 100 and N = 1000 new rollouts (each ``live`` 1 -> 2, canary 10%
then a pause until promote, one alarm):

- time until the FIRST alias has a weight and until the LAST one has, counted from the start of the
  process that moves them (its interpreter start-up included);
- AWS calls per rollout until the last alias had its weight: the Lambda control plane (the quota that
  binds: 15/s at AWS, the controller's budget 10/s by default), GetFunction (a quota of its own,
  100/s), the Tagging API and CloudWatch; and how many calls the proxy refused for exceeding AWS's
  quotas;
- the rollback reaction during the cold start: at 10, 30, 50, 70 and 90% of the first weights, the
  alarm of the rollout that just got its weight is set to ALARM by hand; the time until its alias is
  back on stable, against the controller's limit (one tick interval plus a few round trips);
- the steady state once every rollout waits at 10%: CPU of the whole process (every thread) per
  second of wall time and its RSS, over a minute, from /proc.

The controller is ``lambda-rollouts run`` as a user starts it (``--lease off``, default budget, 5 s
ticks), a subprocess; the naive poller is a few lines of the kind a blog post writes (every tick, per
rollout: GetAlias, DescribeAlarms, UpdateAlias to where it should be, no budget, botocore's default
retries), also a subprocess. Both go through the emulator's fault proxy with AWS's published quotas
(Lambda control plane 15/s, GetFunction 100/s, DescribeAlarms 9/s). What reached AWS is read from the
emulator's call log.

Usage: ``python bench/coldstart.py [N ...] [--only controller|naive]`` (default 100 1000, both; about
half an hour). Prints figures; asserts nothing. ``--naive-poller`` is the poller's own entry point.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import (
    Emulator,
    ProcessUsage,
    canary,
    client,
    cores,
    emulator,
    load_average,
    seed,
    set_alarm,
    start_controller,
    weights,
)

INTERVAL = 5.0
STEADY_SECONDS = 60.0
REACTION_AT = (0.1, 0.3, 0.5, 0.7, 0.9)
CANARY = canary(10, None, 50, None)
# Lambda calls AWS meters apart from the control plane's 15/s.
_OWN_QUOTA = frozenset({"Invoke", "GetFunction", "GetPolicy"})


@dataclass
class Figures:
    """What one cold start measured."""

    who: str
    count: int
    first_weight: float = float("nan")
    last_weight: float = float("nan")
    calls: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    reactions: list[float] = field(default_factory=list)
    cpu_ms_per_s: float = float("nan")
    rss_mb: float = float("nan")
    peak_rss_mb: float = float("nan")
    steady_calls_per_tick: float = float("nan")
    note: str = ""


def kind(call: dict[str, Any]) -> str:
    if call["service"] == "lambda":
        return "lambda.get_function" if call["operation"] in _OWN_QUOTA else "lambda"
    return str(call["service"])


class Watch:
    """Follows the call log: first weights per function, the alarms set by hand and their rollbacks."""

    def __init__(self, world: Emulator, names: list[str], started: float) -> None:
        self.world = world
        self.names = names
        self.started = started
        self.first: dict[str, float] = {}
        self.alarm_set: dict[str, float] = {}
        self.restored: dict[str, float] = {}
        self.calls: list[dict[str, Any]] = []

    def poll(self) -> None:
        new = self.world.calls(since=self.calls[-1]["timestamp"] if self.calls else None)
        self.calls.extend(new)
        for call in new:
            if call["operation"] != "UpdateAlias":
                continue
            name = str(call["params"].get("FunctionName", ""))
            if weights(call):
                self.first.setdefault(name, call["timestamp"])
            elif name in self.alarm_set and call["timestamp"] > self.alarm_set[name]:
                self.restored.setdefault(name, call["timestamp"])

    def fire_alarms(self) -> None:
        """At each share of first weights reached, the rollout that just got its weight is made to fail."""
        due = sum(1 for share in REACTION_AT if len(self.first) >= share * len(self.names))
        while len(self.alarm_set) < due:
            latest = sorted((t, n) for n, t in self.first.items() if n not in self.alarm_set)[-1][1]
            self.alarm_set[latest] = time.time()
            set_alarm(self.world, f"{latest}-errors", "ALARM")

    def reactions(self) -> list[float]:
        return [self.restored[n] - t for n, t in self.alarm_set.items() if n in self.restored]

    def figures(self, figures: Figures, until: float) -> None:
        times = sorted(self.first.values())
        if times:
            figures.first_weight = times[0] - self.started
        if len(times) == len(self.names):
            figures.last_weight = times[-1] - self.started
            until = min(until, times[-1])  # the calls a first shift of every rollout took
        figures.calls = Counter(kind(c) for c in self.calls if c["timestamp"] <= until)
        figures.reactions = self.reactions()


def follow(
    world: Emulator,
    watch: Watch,
    *,
    done: Callable[[], bool],
    process: subprocess.Popen[bytes],
    timeout: float,
) -> float:
    """Poll until ``done`` (or the timeout): fire the alarms on the way; returns when it was done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process under test exited ({process.returncode})")
        watch.poll()
        watch.fire_alarms()
        if done() and len(watch.restored) == len(watch.alarm_set):
            return time.time()
        time.sleep(2.0)
    return time.time()


def steady(world: Emulator, process: subprocess.Popen[bytes], figures: Figures) -> None:
    """CPU and RSS of the whole process over ``STEADY_SECONDS`` of its steady state, and the calls it made."""
    world.clear_calls()
    before, wall = ProcessUsage.of(process.pid), time.monotonic()
    time.sleep(STEADY_SECONDS)
    after, wall = ProcessUsage.of(process.pid), time.monotonic() - wall
    figures.cpu_ms_per_s = (after.cpu - before.cpu) * 1000 / wall
    figures.rss_mb, figures.peak_rss_mb = after.rss_mb, after.peak_rss_mb
    figures.steady_calls_per_tick = len(world.calls()) * INTERVAL / wall


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def fresh_world(world: Emulator, count: int, prefix: str) -> tuple[list[str], Path]:
    world.reset()
    world.quotas([])
    source = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    names = seed(world, prefix=prefix, count=count, source=source, strategy=CANARY)
    world.quotas("aws")
    world.clear_calls()
    world.post("/_proxy/counts/clear", proxy=True)
    return names, source


def paused(log: Path) -> set[str]:
    """Rollouts whose latest status line in the controller's JSON log says Paused."""
    phases: dict[str, str] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"phase"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if "rollout" in entry and "phase" in entry:
            phases[str(entry["rollout"])] = str(entry["phase"])
    return {name for name, phase in phases.items() if phase == "Paused"}


def controller(world: Emulator, count: int) -> Figures:
    names, source = fresh_world(world, count, f"ctl{count}")
    figures = Figures("controller", count)
    log = source.parent / f"{source.name}.log"
    started = time.time()
    process = start_controller(world, source, log, "--interval", str(INTERVAL))
    try:
        watch = Watch(world, names, started)

        def everyone_waits() -> bool:
            """Every rollout has its weight and waits at 10%, or was rolled back by hand."""
            return len(watch.first) == count and len(paused(log) | set(watch.alarm_set)) >= count

        until = follow(
            world,
            watch,
            done=everyone_waits,
            process=process,
            timeout=3600,
        )
        watch.figures(figures, until)
        figures.refused = quota_refusals(world)
        steady(world, process, figures)
        throttle_lines = sum(1 for line in log.read_text().splitlines() if "throttl" in line.lower())
        figures.note = f"{throttle_lines} log lines about throttling"
    finally:
        stop(process)
    return figures


def naive(world: Emulator, count: int) -> Figures:
    names, source = fresh_world(world, count, f"naive{count}")
    figures = Figures("naive poller", count)
    listing = source.parent / f"{source.name}.names"
    listing.write_text("\n".join(names))
    log = source.parent / f"{source.name}.log"
    started = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, __file__, "--naive-poller", world.proxy_url, str(listing)], stdout=out, stderr=out
        )
    try:
        watch = Watch(world, names, started)
        until = follow(world, watch, done=lambda: len(watch.first) == count, process=process, timeout=3600)
        watch.figures(figures, until)
        figures.refused = quota_refusals(world)
        steady(world, process, figures)
        sweeps = [float(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("sweep ")]
        if sweeps:
            figures.note = f"a sweep over every rollout took {min(sweeps):.0f}-{max(sweeps):.0f} s"
    finally:
        stop(process)
    return figures


def quota_refusals(world: Emulator) -> int:
    return sum(n for key, n in world.proxy_counts()["faults"].items() if key.endswith(":quota"))


# ---- the naive poller -------------------------------------------------------------------------------


def naive_poller(proxy_url: str, listing: Path) -> int:
    """Every tick, for every rollout: read the alias, read its alarm, write where the alias should be."""
    names = listing.read_text().split()
    lam, cw = client(proxy_url, "lambda"), client(proxy_url, "cloudwatch")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        began = time.monotonic()
        for name in names:
            try:
                lam.get_alias(FunctionName=name, Name="live")
                alarms = cw.describe_alarms(AlarmNames=[f"{name}-errors"])["MetricAlarms"]
                failing = any(a["StateValue"] == "ALARM" for a in alarms)
                routing = {"AdditionalVersionWeights": {} if failing else {"2": 0.1}}
                lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1", RoutingConfig=routing)
            except (ClientError, BotoCoreError) as exc:
                print(f"{name}: {exc}", flush=True)
        took = time.monotonic() - began
        print(f"sweep {took:.1f}", flush=True)
        time.sleep(max(0.0, INTERVAL - took))


# ---- the report -------------------------------------------------------------------------------------


def per_rollout(figures: Figures, kind: str) -> str:
    return f"{figures.calls[kind] / figures.count:.2f}"


def row(figures: Figures) -> str:
    reactions = sorted(figures.reactions)
    reaction = f"{reactions[len(reactions) // 2]:.1f} / {reactions[-1]:.1f} s" if reactions else "-"
    return (
        f"| {figures.who} | {figures.count} | {figures.first_weight:.1f} s | {figures.last_weight:.1f} s "
        f"| {per_rollout(figures, 'lambda')} | {per_rollout(figures, 'lambda.get_function')} "
        f"| {per_rollout(figures, 'tagging')} | {per_rollout(figures, 'cloudwatch')} "
        f"| {figures.refused} | {reaction} ({len(reactions)}/{len(REACTION_AT)}) "
        f"| {figures.cpu_ms_per_s:.1f} ms/s | {figures.rss_mb:.0f} MB (peak {figures.peak_rss_mb:.0f}) "
        f"| {figures.steady_calls_per_tick:.0f} | {figures.note} |"
    )


def main(counts: list[int], *, only: str | None = None) -> int:
    print(f"{cores()} cores, load average {load_average()} at the start")
    results: list[Figures] = []
    scenarios = [s for s in (controller, naive) if only in (None, s.__name__)]
    with emulator() as world:
        for count in counts:
            for scenario in scenarios:
                figures = scenario(world, count)
                print(row(figures), flush=True)
                results.append(figures)
    print(f"\nload average {load_average()} at the end; tick interval {INTERVAL:.0f} s")
    print(
        "\n| process | rollouts | first alias weighted | last alias weighted | Lambda control plane / rollout "
        "| GetFunction / rollout | GetResources / rollout | CloudWatch / rollout | refused by the quotas "
        "| rollback reaction p50 / max | steady CPU | steady RSS | calls per 5 s, steady | note |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for figures in results:
        print(row(figures))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("counts", nargs="*", type=int)
    parser.add_argument("--only", choices=("controller", "naive"), help="run one of the two")
    parser.add_argument("--steady", type=float, default=STEADY_SECONDS, help="seconds of steady state measured")
    parser.add_argument("--naive-poller", nargs=2, metavar=("PROXY_URL", "NAMES_FILE"))
    args = parser.parse_args()
    STEADY_SECONDS = args.steady
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    if args.naive_poller:
        sys.exit(naive_poller(args.naive_poller[0], Path(args.naive_poller[1])))
    sys.exit(main(args.counts or [100, 1000], only=args.only))
