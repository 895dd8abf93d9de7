"""Per-tick cost of the engine with N rollouts paused mid-canary: AWS calls, wall time, CPU, memory.

The strict emulator and the fault proxy (with AWS's published rate quotas) run in a subprocess
(``lambda-rollouts emulator --proxy-port``), so the CPU measured here is the controller's own.
For each N the script seeds N functions (versions 1 and 2, alias ``live`` on 1, one alarm each),
lets the engine walk every rollout to a pause at 10% (a pause without duration: it waits for
``promote``), then measures steady-state ticks: the situation of a controller looking after many
rollouts that are mostly waiting, after ten minutes of (fake) time so that the slow drift checks
(each alias re-read every 10 minutes, at most N/100 per tick) are included. Quotas are switched on
only for the measured ticks so that the seeding does not take minutes; the engine's own budget is
raised for the same reason (a quiet tick makes far fewer calls than any budget allows, so it plays
no part in the figures).

Usage: ``python bench/ticks.py [N ...]`` (default 10 100 1000). Prints figures; asserts nothing.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.core.types import Phase
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource

# Run as a script: the benchmarks' shared world (bench/world.py) is beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import Emulator, canary, emulator, seed

MEASURED_TICKS = 5
INTERVAL = 5.0
AWS_QUOTAS = [
    {"name": "lambda-control-plane", "service": "lambda", "rate": 15.0, "exclude": ["Invoke", "InvokeAsync"]},
    {"name": "describe-alarms", "service": "cloudwatch", "rate": 9.0, "operations": ["DescribeAlarms"]},
    {"name": "get-metric-data", "service": "cloudwatch", "rate": 50.0, "operations": ["GetMetricData"]},
]


class FakeClock:
    """Ticks are driven back to back; the clock says INTERVAL seconds passed between them."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def measure(count: int, world: Emulator) -> None:
    source = Path(tempfile.mkdtemp(prefix=f"bench-{count}-"))
    # Waiting for ``promote`` at 10%, one watched alarm each: the idle rollouts of the cost checks.
    seed(world, prefix=f"bench-{count}", count=count, source=source, strategy=canary(10, None, 50, None))
    world.quotas([])
    clock = FakeClock()
    aws = make_clients(AwsSettings(endpoint_url=world.proxy_url), budget=Budget(dict.fromkeys(DEFAULT_RATES, 1e6)))
    engine = Engine(aws, settings=EngineSettings(interval=INTERVAL), clock=clock)
    await engine.apply(FileSource(source).scan())
    started = time.monotonic()
    while not all(r.status and r.status.phase is Phase.PAUSED for r in engine.rollouts().values()):
        clock.now += INTERVAL
        await engine.tick()
    print(f"\nN={count}: all paused at 10% after {time.monotonic() - started:.1f}s of set-up ticks")
    # Run 10 minutes of (fake) time so the slow drift checks are in their steady state too.
    for _ in range(int(600 / INTERVAL)):
        clock.now += INTERVAL
        await engine.tick()
    world.quotas(AWS_QUOTAS)
    for tick in range(1, MEASURED_TICKS + 1):
        world.clear_calls()
        clock.now += INTERVAL
        wall, cpu = time.perf_counter(), time.process_time()
        await engine.tick()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        made = world.calls()
        ops = Counter(f"{c['service']}:{c['operation']}" for c in made)
        by_service = Counter(c["service"] for c in made)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  tick {tick}: wall {wall * 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms  peak RSS {rss:5.0f} MB  "
            f"lambda {by_service['lambda']:3d}  cloudwatch {by_service['cloudwatch']}  "
            f"calls {dict(sorted(ops.items()))}"
        )


def main(argv: list[str]) -> int:
    counts = [int(a) for a in argv] or [10, 100, 1000]
    with emulator() as world:
        for count in counts:
            asyncio.run(measure(count, world))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main(sys.argv[1:]))
