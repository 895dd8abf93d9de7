"""``run``'s lease options as users meet them: ``--once`` under the lease, ``--lease off``, a standby's face.

Subprocesses against the strict emulator, each with its own access key so the emulator's call log
says which process made which call.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    WRITE_OPERATIONS,
    alias_routing,
    canary,
    cli_env,
    daemon,
    free_port,
    http_ok,
    rollout_document,
    seed_alias,
    stop_with_sigterm,
    write_document,
)

LEASE = ["--lease-duration", "3"]


def env_for(aws: Emulator, key: str) -> dict[str, str]:
    return {**cli_env(aws), "AWS_ACCESS_KEY_ID": key}


def once(aws: Emulator, source: Path, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [*CLI, "run", "--source", str(source), "--once", "--log-format", "text", *LEASE, *extra]
    return subprocess.run(args, env=env_for(aws, key), capture_output=True, text=True, timeout=60)


def calls_by(aws: Emulator, key: str) -> list[Any]:
    return [c for c in aws.calls() if c.access_key == key]


def lease_item(aws: Emulator) -> dict[str, Any]:
    response = aws.client("dynamodb").get_item(
        TableName="lambda-rollouts-leases", Key={"name": {"S": "default"}}, ConsistentRead=True
    )
    return dict(response["Item"])


def get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_once_takes_a_free_lease_for_its_pass_and_gives_it_back(aws: Emulator, docs: Path) -> None:
    seed_alias(aws, "once-free")
    write_document(docs, rollout_document("once-free", function="once-free", version="2", strategy=canary(30, None)))
    result = once(aws, docs, "ONCE")
    assert result.returncode == 0, result.stderr
    assert alias_routing(aws, "once-free", "live") == ("1", {"2": 0.3})
    # The table was created on demand, the lease taken, then released: the next controller need not wait.
    dynamodb = [c.operation for c in calls_by(aws, "ONCE") if c.service == "dynamodb"]
    assert dynamodb[:2] == ["DescribeTable", "CreateTable"] and "PutItem" in dynamodb
    assert lease_item(aws)["holder"] == {"S": ""}
    again = once(aws, docs, "AGAIN")
    assert again.returncode == 0, again.stderr
    assert "did not renew" not in again.stderr  # taken at once, not after a lease duration


def test_once_refuses_when_a_live_controller_holds_the_lease(aws: Emulator, docs: Path, tmp_path: Path) -> None:
    seed_alias(aws, "once-held")
    write_document(docs, rollout_document("once-held", function="once-held", version="2", strategy=canary(30, None)))
    args = ["run", "--source", str(docs), "--interval", "0.5", "--log-format", "text", *LEASE]
    with daemon(args, env=env_for(aws, "DAEMON"), log=tmp_path / "daemon.log") as process:
        aws.wait_for(lambda: alias_routing(aws, "once-held", "live") == ("1", {"2": 0.3}), timeout=30)
        aws.clear_calls()
        result = once(aws, docs, "ONCE")
        stop_with_sigterm(process)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "lease default is held by " in lines[0] and "another controller runs this directory" in lines[0]
    assert not [c for c in calls_by(aws, "ONCE") if c.operation in WRITE_OPERATIONS]


def test_lease_off_makes_no_dynamodb_call(aws: Emulator, docs: Path) -> None:
    seed_alias(aws, "alone")
    write_document(docs, rollout_document("alone", function="alone", version="2", strategy=canary(30, None)))
    result = once(aws, docs, "ALONE", "--lease", "off")
    assert result.returncode == 0, result.stderr
    assert alias_routing(aws, "alone", "live") == ("1", {"2": 0.3})
    assert not [c for c in calls_by(aws, "ALONE") if c.service == "dynamodb"]


def test_a_lease_table_that_does_not_exist_or_a_bad_option(aws: Emulator, docs: Path) -> None:
    missing = once(aws, docs, "X", "--lease", "my-leases")
    assert missing.returncode == 1
    assert "--lease my-leases: the table does not exist (create it, or use --lease auto)" in missing.stderr
    assert "Traceback" not in missing.stderr
    for bad in (["--lease", "no way!"], ["--lease-duration", "0"], ["--lease-name", ""]):
        result = once(aws, docs, "X", *bad)
        assert result.returncode == 2, (bad, result.stderr)


def test_a_standby_says_who_leads_on_readyz_and_in_its_metrics(aws: Emulator, docs: Path, tmp_path: Path) -> None:
    seed_alias(aws, "faces")
    write_document(docs, rollout_document("faces", function="faces", version="2", strategy=canary(30, None)))
    ports = free_port(), free_port()
    base = ["run", "--source", str(docs), "--interval", "0.5", "--log-format", "text", *LEASE]
    with daemon([*base, "--metrics-port", str(ports[0])], env=env_for(aws, "LEAD"), log=tmp_path / "a.log") as lead:
        aws.wait_for(lambda: http_ok(f"http://127.0.0.1:{ports[0]}/readyz"), timeout=30)
        standby_args = [*base, "--metrics-port", str(ports[1])]
        with daemon(standby_args, env=env_for(aws, "STANDBY"), log=tmp_path / "b.log") as standby:

            def standby_answers() -> tuple[int, dict[str, Any]] | None:
                try:
                    return get_json(f"http://127.0.0.1:{ports[1]}/readyz")
                except OSError:
                    return None

            status, body = aws.wait_for(standby_answers, timeout=30)
            assert status == 503 and body["missing"] == ["leadership_known"], body
            reason = body["reasons"]["leadership_known"]
            assert reason.startswith("lease default is held by ") and reason.endswith("; waiting"), reason
            leader_metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5).read()
            standby_metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/metrics", timeout=5).read()
            assert b"\nlambda_rollouts_leader 1.0" in leader_metrics
            assert b"\nlambda_rollouts_leader 0.0" in standby_metrics
            stop_with_sigterm(standby)
        stop_with_sigterm(lead)
    log = (tmp_path / "b.log").read_text()
    assert (
        log.count("; waiting (controllers for different directories in one account need different --lease-name)") == 1
    )
    assert not [c for c in calls_by(aws, "STANDBY") if c.operation in WRITE_OPERATIONS]
