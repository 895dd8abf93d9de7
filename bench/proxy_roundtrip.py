"""Round trip to the strict emulator, direct and through its fault proxy (no rule, no quota).

The proxy sits in front of the emulator in every benchmark that injects faults or enforces AWS's
quotas, so any time it adds to a call it adds to every figure measured through it. This script
starts the emulator and the proxy in a subprocess (``lambda-rollouts emulator --proxy-port``),
seeds one function with an alias and one alarm, switches the proxy's AWS quotas off (the calls here
come faster than Lambda's 15/s and would be throttled and retried), and times the same boto3 calls, on
one kept-alive connection each way, directly and through the proxy.

Usage: ``python bench/proxy_roundtrip.py [CALLS]`` (default 200 per operation and path). Prints
figures; asserts nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script: the benchmarks' shared world (bench/world.py) is beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from world import client, emulator

OPERATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "GetAlias": lambda lam, cw: lam.get_alias(FunctionName="bench", Name="live"),
    "ListVersionsByFunction": lambda lam, cw: lam.list_versions_by_function(FunctionName="bench"),
    "DescribeAlarms": lambda lam, cw: cw.describe_alarms(AlarmNames=["bench-errors"]),
}


def seed(url: str) -> None:
    iam, lam, cw = client(url, "iam"), client(url, "lambda"), client(url, "cloudwatch")
    role = iam.create_role(RoleName="bench", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(FunctionName="bench", Runtime="python3.12", Role=role, Handler="x.h", Code={"ZipFile": b"v1"})
    lam.publish_version(FunctionName="bench")
    lam.create_alias(FunctionName="bench", Name="live", FunctionVersion="1")
    cw.put_metric_alarm(
        AlarmName="bench-errors",
        Namespace="AWS/Lambda",
        MetricName="Errors",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )


def timings(url: str, operation: Callable[[Any, Any], Any], calls: int) -> list[float]:
    lam, cw = client(url, "lambda"), client(url, "cloudwatch")
    operation(lam, cw)  # the connection is opened (and kept alive) outside the measurement
    found = []
    for _ in range(calls):
        started = time.perf_counter()
        operation(lam, cw)
        found.append((time.perf_counter() - started) * 1000)
    return found


def describe(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"p50 {statistics.median(ordered):6.2f} ms  p90 {p90:6.2f} ms  max {ordered[-1]:6.2f} ms"


def main(argv: list[str]) -> int:
    calls = int(argv[0]) if argv else 200
    with emulator() as world:
        seed(world.url)
        world.quotas([])
        print(f"{calls} calls per operation and path, one kept-alive connection each")
        for name, operation in OPERATIONS.items():
            direct = timings(world.url, operation, calls)
            proxied = timings(world.proxy_url, operation, calls)
            extra = statistics.median(proxied) - statistics.median(direct)
            print(f"{name}")
            print(f"  direct        {describe(direct)}")
            print(f"  through proxy {describe(proxied)}  (+{extra:.2f} ms at the median)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    sys.exit(main(sys.argv[1:]))
