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
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.core.types import Phase
from controller.runtime.engine import Engine, EngineSettings
from controller.sources.files import FileSource

# Run as a script, so the repository root (the ``tests`` package) is not on the path by itself. The
# seeding is the cost test's (tests/integration/test_engine_cost.py); its module imports no emulator.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.documents import paused_rollout_document, put_errors_alarm, write_document

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


def start_emulator() -> tuple[subprocess.Popen[str], str, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "emulator", "--port", "0", "--proxy-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    while len(urls) < 2:
        line = process.stdout.readline()
        match = re.search(r"(emulator|fault proxy) listening on (\S+)", line)
        if match:
            urls[match.group(1)] = match.group(2)
    return process, urls["emulator"], urls["fault proxy"]


def post(url: str, payload: Any = None) -> Any:
    data = json.dumps(payload if payload is not None else {}).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"{}")


def calls(emulator_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{emulator_url}/_emulator/calls") as response:
        return list(json.loads(response.read())["calls"])


def client(url: str, service: str) -> Any:
    return boto3.client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def seed(emulator_url: str, count: int, source: Path) -> None:
    iam = client(emulator_url, "iam")
    role = iam.create_role(RoleName=f"bench-{count}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def one(index: int) -> None:
        lam, cw = client(emulator_url, "lambda"), client(emulator_url, "cloudwatch")
        name = f"bench-{count}-{index:04d}"
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="x.handler", Code={"ZipFile": b"v1"}
        )
        lam.publish_version(FunctionName=name)
        lam.update_function_code(FunctionName=name, ZipFile=b"v2")
        lam.publish_version(FunctionName=name)
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        put_errors_alarm(cw, f"{name}-errors")
        write_document(source, paused_rollout_document(name, namespace="bench"))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


async def measure(count: int, emulator_url: str, proxy_url: str) -> None:
    source = Path(tempfile.mkdtemp(prefix=f"bench-{count}-"))
    seed(emulator_url, count, source)
    post(f"{proxy_url}/_proxy/quotas", [])
    clock = FakeClock()
    aws = make_clients(AwsSettings(endpoint_url=proxy_url), budget=Budget(dict.fromkeys(DEFAULT_RATES, 1e6)))
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
    post(f"{proxy_url}/_proxy/quotas", AWS_QUOTAS)
    for tick in range(1, MEASURED_TICKS + 1):
        post(f"{emulator_url}/_emulator/calls/clear")
        clock.now += INTERVAL
        wall, cpu = time.perf_counter(), time.process_time()
        await engine.tick()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ops = Counter(f"{c['service']}:{c['operation']}" for c in calls(emulator_url))
        by_service = Counter(c["service"] for c in calls(emulator_url))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"  tick {tick}: wall {wall * 1000:6.1f} ms  cpu {cpu * 1000:6.1f} ms  peak RSS {rss:5.0f} MB  "
            f"lambda {by_service['lambda']:3d}  cloudwatch {by_service['cloudwatch']}  "
            f"calls {dict(sorted(ops.items()))}"
        )


def main(argv: list[str]) -> int:
    counts = [int(a) for a in argv] or [10, 100, 1000]
    process, emulator_url, proxy_url = start_emulator()
    try:
        for count in counts:
            asyncio.run(measure(count, emulator_url, proxy_url))
    finally:
        process.terminate()
        process.wait(10)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main(sys.argv[1:]))
