"""``run --accounts`` and ``run --shard`` as users run them: subprocesses against the emulator's URL.

A shard serves its own account's rollouts only, under a lease named after it; bad ``--accounts``
files and ``--shard`` values stop the command before it touches anything (exit 2, every problem).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import CLI, canary, cli_env, rollout_document, write_calls, write_document

THEIRS = "111111111111"


def cli(emulator: Emulator, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--log-format", "text"],
        env=env or cli_env(emulator),
        capture_output=True,
        text=True,
        timeout=60,
    )


def live(aws: Emulator, account: str | None) -> str:
    return str(aws.client("lambda", account=account).get_alias(FunctionName="api", Name="live")["FunctionVersion"])


def test_a_shard_moves_only_its_account_under_its_own_lease(aws: Emulator, tmp_path: Path) -> None:
    for account in (None, THEIRS):
        aws.seed_function("api", versions=2, account=account)
        aws.client("lambda", account=account).create_alias(FunctionName="api", Name="live", FunctionVersion="1")
    role = aws.trusting_role("lambda-rollouts", account=THEIRS, external_id="tenant-7")
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(f"theirs:\n  roleArn: {role}\n  externalId: tenant-7\n")
    source = tmp_path / "rollouts"
    source.mkdir()
    for namespace in ("ours", "theirs"):
        document = rollout_document("api", function="api", version="2", strategy={"allAtOnce": {}}, namespace=namespace)
        write_document(source, document, f"{namespace}.yaml")

    once = cli(aws, "run", "--source", str(source), "--accounts", str(accounts), "--shard", THEIRS, "--once")
    assert once.returncode == 0, once.stderr
    assert (live(aws, None), live(aws, THEIRS)) == ("1", "2")
    leases = aws.client("dynamodb").scan(TableName="lambda-rollouts-leases")["Items"]
    assert [item["name"]["S"] for item in leases] == [f"default/{THEIRS}"]

    other = cli(aws, "run", "--source", str(source), "--accounts", str(accounts), "--shard", "default", "--once")
    assert other.returncode == 0, other.stderr
    assert live(aws, None) == "2"
    names = sorted(
        item["name"]["S"] for item in aws.client("dynamodb").scan(TableName="lambda-rollouts-leases")["Items"]
    )
    assert names == ["default/111111111111", "default/default"]


def test_bad_accounts_and_shards_are_usage_errors(aws: Emulator, tmp_path: Path) -> None:
    source = tmp_path / "rollouts"
    source.mkdir()
    write_document(source, rollout_document("api", function="api", version="2", strategy=canary(10, 60)))
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("payments:\n  roleArn: not-an-arn\n  externalIdFrom: {env: NOT_SET_ANYWHERE}\n")
    aws.clear_calls()

    bad_file = cli(aws, "run", "--source", str(source), "--accounts", str(accounts), "--once")
    assert bad_file.returncode == 2
    assert f"{accounts}:2: payments.roleArn: 'not-an-arn' is not a role ARN" in bad_file.stderr
    assert f"{accounts}:3: payments.externalIdFrom: environment variable NOT_SET_ANYWHERE is not set" in bad_file.stderr

    bad_shard = cli(aws, "run", "--source", str(source), "--shard", "payments", "--once")
    assert bad_shard.returncode == 2
    assert "--shard 'payments' is not ACCOUNT[/REGION]" in bad_shard.stderr
    assert write_calls(aws) == [] and not aws.calls()
