"""One ``run`` process serving three accounts: two move, the third cannot be reached and says so.

A real ``lambda-rollouts run --accounts FILE`` subprocess against the strict emulator: the same
function name in the controller's own account and in account 111111111111 (its role assumed with an
external ID read from an environment variable), and a third account whose role's trust policy wants
another external ID than the config gives. Both reachable rollouts finish; the third is Invalid
``CredentialsUnavailable`` in the metrics, the log and ``get``, with AWS's AccessDenied, and nothing
is written there. The emulator's call log says in which account every call landed.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    canary,
    cli_env,
    daemon,
    free_port,
    rollout_document,
    stop_with_sigterm,
    write_document,
)

pytestmark = pytest.mark.e2e

OURS, THEIRS, BLOCKED = "123456789012", "111111111111", "222222222222"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator.start(port=0)
    yield emu
    emu.stop()


def live_version(emulator: Emulator, account: str) -> str:
    return str(emulator.client("lambda", account=account).get_alias(FunctionName="api", Name="live")["FunctionVersion"])


def metric_lines(port: int, name: str) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return [line for line in response.read().decode().splitlines() if line.startswith(name + "{")]


def test_one_controller_serves_two_accounts_and_names_the_one_it_cannot_reach(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.reset()
    for account in (OURS, THEIRS, BLOCKED):
        emulator.seed_function("api", versions=2, account=account)
        emulator.client("lambda", account=account).create_alias(FunctionName="api", Name="live", FunctionVersion="1")
    theirs = emulator.trusting_role("lambda-rollouts", account=THEIRS, external_id="tenant-7")
    blocked = emulator.trusting_role("lambda-rollouts", account=BLOCKED, external_id="the-right-one")
    config = tmp_path / "accounts.yaml"
    config.write_text(
        f"theirs:\n  roleArn: {theirs}\n  externalIdFrom: {{env: THEIRS_EXTERNAL_ID}}\n"
        f"blocked:\n  roleArn: {blocked}\n  externalId: a-wrong-one\n"
    )
    source = tmp_path / "rollouts"
    source.mkdir()
    for namespace in ("ours", "theirs", "blocked"):
        document = rollout_document("api", function="api", version="2", strategy=canary(50, 0.5), namespace=namespace)
        write_document(source, document, f"{namespace}.yaml")
    emulator.clear_calls()

    port = free_port()
    env = {**cli_env(emulator), "THEIRS_EXTERNAL_ID": "tenant-7"}
    args = ["run", "--source", str(source), "--accounts", str(config), "--interval", "0.3", "--log-format", "text"]
    args += ["--lease-duration", "3", "--metrics-port", str(port)]
    log = tmp_path / "run.log"
    started = time.monotonic()
    with daemon(args, env=env, log=log) as process:
        deadline = time.monotonic() + 60
        while not (live_version(emulator, OURS) == "2" and live_version(emulator, THEIRS) == "2"):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        finished = time.monotonic() - started
        available = {
            line.split(" ")[0]: line.split(" ")[1]
            for line in metric_lines(port, "lambda_rollouts_aws_credentials_available")
        }
        calls = metric_lines(port, "lambda_rollouts_aws_api_calls_total")
        stop_with_sigterm(process)
    print(f"\nboth reachable accounts on version 2 {finished:.1f}s after the process started")

    assert available[f'lambda_rollouts_aws_credentials_available{{account="{THEIRS}",region="us-east-1"}}'] == "1.0"
    assert available[f'lambda_rollouts_aws_credentials_available{{account="{BLOCKED}",region="us-east-1"}}'] == "0.0"
    assert available['lambda_rollouts_aws_credentials_available{account="default",region="us-east-1"}'] == "1.0"
    assert any(f'account="{THEIRS}"' in line and 'operation="UpdateAlias"' in line for line in calls)
    text = log.read_text()
    assert "cannot act there (AccessDenied: User: arn:aws:iam::123456789012:user/moto is not authorized" in text
    assert "a-wrong-one" not in text and "tenant-7" not in text
    # Where each call landed: ours and theirs moved, nothing at all reached the blocked account.
    updates = {c.account for c in emulator.calls() if c.operation == "UpdateAlias" and c.status < 300}
    assert updates == {OURS, THEIRS}
    assert not any(c.account == BLOCKED for c in emulator.calls())
    assert live_version(emulator, BLOCKED) == "1"

    # `get` reads each account as the controller does, and names the one it cannot read.
    result = subprocess.run(
        [*CLI, "get", "--source", str(source), "--accounts", str(config), "-o", "json", "--log-format", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert (rows["ours/api"]["phase"], rows["ours/api"]["stable"]) == ("Healthy", "2")
    assert (rows["theirs/api"]["phase"], rows["theirs/api"]["stable"]) == ("Healthy", "2")
    assert (rows["blocked/api"]["phase"], rows["blocked/api"]["reason"]) == ("Invalid", "CredentialsUnavailable")
    assert rows["blocked/api"]["errors"][0].startswith("AccessDenied: ")
