"""Five canaries under AWS faults: how much longer than without, and whether anything was broken or hidden.

Five rollouts (``live`` 1 -> 2: 10%, pause 2 s, 50%, pause 2 s, 100%) run by ``lambda-rollouts run``
(a subprocess, default budget and interval, ``--lease off``) through the emulator's fault proxy with
AWS's quotas on, first without faults, then with 30% of Lambda calls throttled, 5% answered 500 and 10%
delayed 200 ms (each rule drawn on its own). Per trial it prints the time from the process start to
the last alias at 100%, how late each 2 s pause ended (from the call log: the time between the alias
write that began the pause and the one that ended it, minus 2 s), the faults injected, the WARNING
lines the controller wrote about them and its retry counter, and the invariants, checked on the call
log: each alias written exactly 10%, 50%, 100% in that order, no pause shorter than 2 s.

Usage: ``python bench/faults.py [TRIALS]`` (default 3; about two minutes). Prints figures; asserts nothing.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import Emulator, canary, cores, emulator, load_average, seed, start_controller, weights

ROLLOUTS = 5
PAUSE = 2.0
STEPS = (10.0, 50.0, 100.0)
FAULTS = [
    {"action": "throttle", "service": "lambda", "probability": 0.30},
    {"action": "error", "service": "lambda", "probability": 0.05, "status": 500},
    {"action": "latency", "service": "lambda", "probability": 0.10, "latency": 0.2},
]


@dataclass(frozen=True)
class Trial:
    faulted: bool
    seconds: float
    late: tuple[float, ...]
    injected: int
    warnings: int
    retries: int
    broken: tuple[str, ...]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def retries_counted(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(int(float(m)) for m in re.findall(r"^lambda_rollouts_aws_api_retries_total\{.*\} (\S+)$", text, re.M))


def trial(world: Emulator, *, faulted: bool, index: int) -> Trial:
    world.reset()
    world.faults([])
    source = Path(tempfile.mkdtemp(prefix="faults-"))
    names = seed(world, prefix=f"f{index}", count=ROLLOUTS, source=source, strategy=canary(10, PAUSE, 50, PAUSE))
    world.quotas("aws")
    world.faults(FAULTS if faulted else [])
    world.clear_calls()
    world.post("/_proxy/counts/clear", proxy=True)
    port = free_port()
    log = source.parent / f"{source.name}.log"
    started = time.time()
    process = start_controller(world, source, log, "--metrics-port", str(port))
    try:
        writes: dict[str, list[tuple[float, float]]] = {}
        deadline = started + 600
        while time.time() < deadline:
            writes = {}
            for call in world.calls():
                if call["operation"] == "UpdateAlias" and 200 <= call["status"] < 300:
                    name = str(call["params"]["FunctionName"])
                    done = call["params"].get("FunctionVersion") == "2" and not weights(call)
                    weight = 100.0 if done else 100 * float(weights(call).get("2", 0.0))
                    writes.setdefault(name, []).append((call["timestamp"], weight))
            if all(writes.get(n) and writes[n][-1][1] == 100.0 for n in names):
                break
            time.sleep(0.2)
        finished = max(w[-1][0] for w in writes.values()) if writes else float("nan")
        retries = retries_counted(port)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    broken: list[str] = []
    late: list[float] = []
    for name in names:
        steps = writes.get(name, [])
        if tuple(round(w) for _, w in steps) != STEPS:
            broken.append(f"{name} written {[w for _, w in steps]}")
            continue
        for (before, _), (after, _) in itertools.pairwise(steps):
            if after - before < PAUSE:
                broken.append(f"{name}: a pause of {after - before:.2f}s")
            late.append(after - before - PAUSE)
    faults = world.proxy_counts()["faults"]
    injected = sum(n for key, n in faults.items() if not key.endswith(":quota"))
    warnings = sum(1 for line in log.read_text().splitlines() if "AWS is slowing down" in line)
    return Trial(faulted, finished - started, tuple(late), injected, warnings, retries, tuple(broken))


def main(trials: int) -> int:
    print(f"{cores()} cores, load average {load_average()} at the start")
    results: list[Trial] = []
    with emulator() as world:
        for index in range(trials):
            for faulted in (False, True):
                result = trial(world, faulted=faulted, index=index)
                results.append(result)
                late = f"{min(result.late):.2f}-{max(result.late):.2f} s" if result.late else "-"
                print(
                    f"| {'faults' if faulted else 'none'} | {result.seconds:.1f} s | {late} | {result.injected} "
                    f"| {result.warnings} | {result.retries} | {', '.join(result.broken) or 'none'} |",
                    flush=True,
                )
    print(f"load average {load_average()} at the end")
    clean = [r.seconds for r in results if not r.faulted]
    slowed = [r.seconds for r in results if r.faulted]
    if clean and slowed:
        ratio = max(slowed) / min(clean)
        print(f"without faults {min(clean):.1f}-{max(clean):.1f} s, with {min(slowed):.1f}-{max(slowed):.1f} s")
        print(f"worst faulted trial / best clean trial: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
