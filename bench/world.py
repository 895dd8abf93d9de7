"""The benchmarks' test world: the strict emulator and its fault proxy in a subprocess, seeding, the call log.

Shared by the benchmarks that need AWS (coldstart, faults, proxy_roundtrip, reaction, ticks).
The emulator runs in a process of its own (``lambda-rollouts emulator --proxy-port``) so that
whatever a benchmark measures in its own process, or in a controller process it starts, is the
controller's and not moto's. Everything here talks to the emulator over HTTP: its control endpoints
(``/_emulator/...``, ``/_proxy/...``) with urllib, AWS with boto3, never through the controller's
own code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

# Run as scripts, so the repository root (the ``tests`` package) is not on the path by itself. The
# documents are the tests' (``tests/integration/documents.py``); that module imports no emulator.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.integration.documents import canary, put_errors_alarm, rollout_document, write_document  # noqa: E402

__all__ = [
    "Emulator",
    "ProcessUsage",
    "canary",
    "client",
    "cores",
    "emulator",
    "load_average",
    "seed",
    "set_alarm",
    "start_controller",
    "weights",
]


@dataclass(frozen=True)
class Emulator:
    """The emulator subprocess: its own URL (no faults, no quotas) and its fault proxy's."""

    url: str
    proxy_url: str

    def post(self, path: str, payload: Any = None, *, proxy: bool = False) -> Any:
        base = self.proxy_url if proxy else self.url
        data = json.dumps(payload if payload is not None else {}).encode()
        request = urllib.request.Request(
            f"{base}{path}", data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"{}")

    def calls(self, *, since: float | None = None) -> list[dict[str, Any]]:
        """The emulator's call log (what reached AWS: a call the proxy refused is not in it), all of it
        or only the calls after epoch second ``since``."""
        query = f"?since={since!r}" if since is not None else ""
        with urllib.request.urlopen(f"{self.url}/_emulator/calls{query}", timeout=60) as response:
            return list(json.loads(response.read())["calls"])

    def clear_calls(self) -> None:
        self.post("/_emulator/calls/clear")

    def reset(self) -> None:
        """Wipe every AWS resource and the call log."""
        self.post("/_emulator/reset")

    def quotas(self, quotas: list[dict[str, Any]] | str) -> None:
        """The proxy's rate quotas: ``"aws"`` for AWS's published ones, ``[]`` for none."""
        self.post("/_proxy/quotas", quotas, proxy=True)

    def faults(self, rules: list[dict[str, Any]]) -> None:
        self.post("/_proxy/rules", rules, proxy=True)

    def proxy_counts(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.proxy_url}/_proxy/counts", timeout=60) as response:
            return dict(json.loads(response.read()))

    def client(self, service: str, *, proxy: bool = False, **config: Any) -> Any:
        return client(self.proxy_url if proxy else self.url, service, **config)


def client(url: str, service: str, **config: Any) -> Any:
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(**config) if config else None,
    )


@contextmanager
def emulator() -> Iterator[Emulator]:
    """Start ``lambda-rollouts emulator`` with its fault proxy (AWS's quotas on), stop it afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "emulator", "--port", "0", "--proxy-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    urls: dict[str, str] = {}
    try:
        while len(urls) < 2:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the emulator exited before it listened")
            match = re.search(r"(emulator|fault proxy) listening on (\S+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
        yield Emulator(url=urls["emulator"], proxy_url=urls["fault proxy"])
    finally:
        process.terminate()
        process.wait(10)


def start_controller(world: Emulator, source: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``lambda-rollouts run`` on ``source`` as a user starts it (``--lease off``, JSON log to ``log``),
    through the fault proxy with credentials of its own (``controller``: its calls are told apart)."""
    env = os.environ | {"AWS_ACCESS_KEY_ID": "controller", "AWS_SECRET_ACCESS_KEY": "controller"}
    command = [sys.executable, "-m", "controller.cli", "run", "--aws-endpoint-url", world.proxy_url]
    command += ["--log-format", "json", "--source", str(source), "--lease", "off", *args]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)


def seed(
    world: Emulator,
    *,
    prefix: str,
    count: int,
    source: Path,
    strategy: dict[str, Any],
    alarm: bool = True,
) -> list[str]:
    """``count`` functions (versions 1 and 2, alias ``live`` on 1, an errors alarm each) and a document
    each moving ``live`` to 2 with ``strategy``; returns the function names.

    The alarms ignore missing data, so a state set by hand (``SetAlarmState``) holds until set again.
    """
    iam = world.client("iam")
    role = iam.create_role(RoleName=f"{prefix}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    names = [f"{prefix}-{index:04d}" for index in range(count)]

    def one(name: str) -> None:
        lam, cw = world.client("lambda"), world.client("cloudwatch")
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="x.handler", Code={"ZipFile": b"v1"}
        )
        lam.publish_version(FunctionName=name)
        lam.update_function_code(FunctionName=name, ZipFile=b"v2")
        lam.publish_version(FunctionName=name)
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        alarms: list[str] = []
        if alarm:
            put_errors_alarm(cw, f"{name}-errors", TreatMissingData="ignore")
            alarms.append(f"{name}-errors")
        document = rollout_document(
            name, function=name, version="2", strategy=strategy, alarms=alarms, namespace="bench"
        )
        write_document(source, document)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, names))
    return names


def set_alarm(world: Emulator, name: str, state: str) -> None:
    world.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue=state, StateReason="bench")


def weights(call: dict[str, Any]) -> dict[str, float]:
    """The additional version weights an alias write in the call log asked for."""
    routing = call["params"].get("RoutingConfig") or {}
    return dict(routing.get("AdditionalVersionWeights") or {})


@dataclass(frozen=True)
class ProcessUsage:
    """CPU seconds (user + system, every thread) and memory of a running process, from /proc."""

    cpu: float
    rss_mb: float
    peak_rss_mb: float

    @classmethod
    def of(cls, pid: int) -> ProcessUsage:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        return cls(
            cpu=cpu,
            rss_mb=int(status["VmRSS"].split()[0]) / 1024,
            peak_rss_mb=int(status["VmHWM"].split()[0]) / 1024,
        )


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cores() -> int:
    return os.cpu_count() or 1
