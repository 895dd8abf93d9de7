"""``lambda-rollouts demo`` end to end: the story's outcome as AWS saw it, and a clean stop on a signal.

The first test runs the demo as a subprocess against an emulator this test started, then reads the
outcome from AWS's side with boto3, not from the printed text (which it only checks shows the
evidence): the alias, the rollout's durable record on the function, and the alarm state changes the
emulator published on the default event bus (collected in an SQS queue, as an AWS user would). The
others interrupt the demo mid-story and check that nothing is left behind: no process, no listening
port, no temporary folder.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.core.codec import decode_record
from controller.core.types import Phase
from controller.emulator import Emulator
from tests.integration.helpers import CLI, alias_routing, cli_env, function_tags

pytestmark = pytest.mark.e2e

SPEED = "5"
ALARMS = ("brand-api-error-rate-canary", "brand-api-p99-latency-canary")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)  # the demo sets the alarm clock and the versions' behaviour itself
    yield emu
    emu.stop()


def alarm_events_queue(emulator: Emulator) -> str:
    """An SQS queue receiving every CloudWatch alarm state change from the default event bus."""
    sqs, events = emulator.client("sqs"), emulator.client("events")
    url = sqs.create_queue(QueueName="alarm-changes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.cloudwatch"], "detail-type": ["CloudWatch Alarm State Change"]}
    events.put_rule(Name="alarm-changes", EventPattern=json.dumps(pattern))
    events.put_targets(Rule="alarm-changes", Targets=[{"Id": "queue", "Arn": arn}])
    return str(url)


def alarm_transitions(emulator: Emulator, url: str) -> list[tuple[str, str]]:
    """(alarm name, new state) of every state change delivered to the queue."""
    sqs = emulator.client("sqs")
    found: list[tuple[str, str]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            detail = json.loads(message["Body"])["detail"]
            found.append((detail["alarmName"], detail["state"]["value"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_demo_promotes_version_2_and_rolls_back_version_3_on_its_evidence(emulator: Emulator) -> None:
    emulator.reset()
    url = alarm_events_queue(emulator)
    started = time.monotonic()
    done = subprocess.run(
        [*CLI, "demo", "--speed", SPEED, "--no-live", "--aws-endpoint-url", emulator.url],
        env=cli_env(emulator),
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert elapsed < 40, f"the demo took {elapsed:.0f}s at --speed {SPEED}"

    # The alias: back on version 2 alone, no weights left behind.
    assert alias_routing(emulator, "brand-api", "prod") == ("2", {})

    # The durable record on the function: v2 promoted, v3 rolled back by the sequential test, whose
    # evidence (both rates with their counts, and the bound) is in the message.
    record = decode_record("prod", function_tags(emulator, "brand-api"))
    assert record is not None
    outcomes = [(h.version, h.outcome, h.reason) for h in record.history]
    assert ("2", "Promoted", "Promoted") in outcomes, outcomes
    assert ("3", "RolledBack", "RegressionDetected") in outcomes, outcomes
    assert record.phase is Phase.ROLLED_BACK
    assert (record.stable, record.canary, record.weight, record.sequential) == ("2", None, 0, ())
    assert record.message.startswith("regression detected by sequential test errors: canary "), record.message
    assert " vs stable 0.0% (0/" in record.message and ">= 100): version 3 rolled back to 2" in record.message
    assert [f.version for f in record.failed] == ["3"]
    # On screen too, as it happened.
    assert "RegressionDetected: regression detected by sequential test errors: canary " in done.stdout

    # The alarms: the alias-level alarms never went to ALARM (a 10% canary stays under them); the
    # sequential test compared version against version and caught it.
    transitions = alarm_transitions(emulator, url)
    assert transitions and not [t for t in transitions if t[1] == "ALARM"], transitions
    alarms = emulator.client("cloudwatch").describe_alarms(AlarmNames=list(ALARMS))["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in alarms) == sorted(ALARMS)


class Lines:
    """A subprocess's stdout read on a thread, so the test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stdout is not None
        stream = process.stdout
        threading.Thread(target=lambda: [self._lines.put(line) for line in stream], daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; got {self.seen}")


def children_of(pid: int) -> set[int]:
    """Direct child processes, from /proc (Linux)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_demo_stops_everything(tmp_path: Path, signum: signal.Signals) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("AWS_ENDPOINT_URL", None)  # the demo starts its own emulator
    process = subprocess.Popen(
        [*CLI, "demo", "--speed", SPEED, "--no-live"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = Lines(process)
        port = int(lines.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        lines.wait_for(r"WeightShifted: version 2 at 10%")  # mid-story: traffic, engine, alarms all running
        assert listening(port)
        assert list(tmp_path.glob("lambda-rollouts-demo-*")), "the demo's documents folder"
        children = children_of(process.pid)
        interrupted = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=10) == 130
        assert time.monotonic() - interrupted < 10
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not listening(port)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not list(tmp_path.iterdir()), "temporary files left behind"
