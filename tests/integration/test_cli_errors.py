"""One error path for the command line: one line saying what to do, the exit code of the contract.

Run as users run it (a subprocess reading the environment), with the environment broken the ways it
breaks in the field: no credentials, no region, an endpoint nobody listens on, a demo run twice
against the same emulator. A traceback appears only with ``--log-level debug``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    canary,
    cli_env,
    free_port,
    rollout_document,
    seed_alias,
    write_document,
)


def cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def bare_env() -> dict[str, str]:
    """No AWS configuration at all (and no instance metadata service to ask)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent"
    )
    return env


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("no-region", "no AWS region configured: pass --region or set AWS_REGION"),
        ("no-credentials", "no AWS credentials found"),
        ("unreachable", "cannot reach AWS"),
    ],
)
def test_a_broken_environment_is_one_line_and_exit_1(setup: str, expected: str) -> None:
    env = bare_env()
    if setup == "no-credentials":
        env["AWS_REGION"] = "eu-west-1"
    elif setup == "unreachable":
        env.update(AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    for verb in (["get"], ["abort", "orders"]):
        result = cli(*verb, env=env)
        assert result.returncode == 1, result.stderr
        line = one_line(result)
        assert line.startswith(f"lambda-rollouts {verb[0]}: error: ") and expected in line, line


def test_the_traceback_only_with_log_level_debug() -> None:
    env = bare_env()
    result = cli("get", "--log-level", "debug", env=env)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "no AWS region configured" in result.stderr.splitlines()[-1]


def test_the_daemon_stops_with_one_line_when_aws_is_unreachable(tmp_path: Path) -> None:
    env = bare_env()
    env.update(AWS_REGION="eu-west-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    result = cli("run", "--source", str(tmp_path), "--log-format", "json", env=env)
    assert result.returncode == 1
    assert "cannot reach AWS" in result.stderr.splitlines()[-1] and "Traceback" not in result.stderr


def test_a_second_demo_against_the_same_emulator_says_what_to_do(aws: Emulator) -> None:
    env = cli_env(None)
    first = cli("demo", "--no-live", "--speed", "10", "--aws-endpoint-url", aws.url, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    again = cli("demo", "--no-live", "--speed", "10", "--aws-endpoint-url", aws.url, env=env, timeout=120)
    assert again.returncode == 1
    line = again.stderr.strip().splitlines()[-1]
    assert "already has function brand-api" in line and "moto-api/reset" in line
    assert "Traceback" not in again.stderr


def test_exit_codes_follow_the_contract(aws: Emulator, tmp_path: Path) -> None:
    env = cli_env(aws)
    # An unknown rollout is a failure (1), not a usage error (2), for every control verb.
    for verb in ("abort", "promote", "pause"):
        result = cli(verb, "nobody", env=env)
        assert result.returncode == 1 and "not found" in result.stderr, (verb, result.stderr)
    # A path that does not exist is a usage error, for plan as for validate.
    assert cli("plan", str(tmp_path / "missing.yaml"), env=env).returncode == 2
    assert cli("validate", str(tmp_path / "missing.yaml"), env=env).returncode == 2

    # --wait on a verb the controller ignores exits 1 and says why.
    seed_alias(aws, "orders")
    write_document(tmp_path, rollout_document("orders", function="orders", version="1", strategy=canary(10, 60)))
    assert cli("run", "--source", str(tmp_path), "--once", env=env).returncode == 0  # Healthy on version 1
    waiter = subprocess.Popen(
        [*CLI, "promote", "orders", "--full", "--wait", "--timeout", "60", "--poll-interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(50):  # the controller's passes, until the waiting verb has its answer
            if waiter.poll() is not None:
                break
            cli("run", "--source", str(tmp_path), "--once", env=env)
        _, err = waiter.communicate(timeout=60)
    finally:
        waiter.kill()
    assert waiter.returncode == 1, err
    assert "promote-full ignored: no rollout in progress" in err
