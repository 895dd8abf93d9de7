"""``plan``, ``get`` and ``run --once`` as users run them: subprocesses against the emulator's URL."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import (
    CLI,
    alias_routing,
    canary,
    cli_env,
    rollout_document,
    seed_alias,
    write_calls,
    write_document,
)


def cli(emulator: Emulator, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--log-format", "text"], env=cli_env(emulator), capture_output=True, text=True, timeout=60
    )


def test_plan_prints_next_actions_and_changes_nothing(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    write_document(tmp_path, rollout_document("orders", function="orders", version="2", strategy=canary(10, 60)))
    write_document(
        tmp_path, rollout_document("broken", function="orders", alias="beta", version="7", strategy=canary(10, 60))
    )
    aws.clear_calls()

    result = cli(aws, "plan", str(tmp_path))

    assert result.returncode == 1, result.stderr  # version 7 does not exist
    assert "update alias live of orders: 90% -> 1, 10% -> 2" in result.stdout
    assert "default/broken" in result.stdout and "7" in result.stdout
    assert write_calls(aws) == []
    assert alias_routing(aws, "orders", "live") == ("1", {})


def test_plan_refuses_an_invalid_document(aws: Emulator, tmp_path: Path) -> None:
    document = rollout_document("bad", function="orders", version="2", strategy=canary(150, 60))
    path = write_document(tmp_path, document)
    result = cli(aws, "plan", str(path))
    assert result.returncode == 1
    assert f"{path}:" in result.stderr and "setWeight" in result.stderr


def test_run_once_then_get_shows_records_and_invalid_rollouts(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    write_document(tmp_path, rollout_document("orders", function="orders", version="2", strategy=canary(10, 600)))
    write_document(tmp_path, rollout_document("ghost", function="ghost", version="2", strategy=canary(10, 60)))
    (tmp_path / "junk.yaml").write_text("apiVersion: lambda.rollouts.dev/v1alpha1\nkind: LambdaRollout\nspec: [\n")

    once = cli(aws, "run", "--source", str(tmp_path), "--once")
    assert once.returncode == 1, once.stderr  # ghost is Invalid
    assert alias_routing(aws, "orders", "live") == ("1", {"2": 0.1})

    recorded = cli(aws, "get", "-o", "json")
    assert recorded.returncode == 0, recorded.stderr
    [orders] = json.loads(recorded.stdout)
    assert (orders["name"], orders["stable"], orders["canary"], orders["weight"]) == ("default/orders", "1", "2", 10)

    aws.clear_calls()
    everything = cli(aws, "get", "-o", "json", "--source", str(tmp_path))
    rows = {row["name"]: row for row in json.loads(everything.stdout)}
    assert rows["default/ghost"]["phase"] == "Invalid" and "ghost" in " ".join(rows["default/ghost"]["errors"])
    assert any(name.endswith("junk.yaml") and row["phase"] == "Invalid" for name, row in rows.items())
    assert rows["default/orders"]["weight"] == 10
    assert write_calls(aws) == []

    table = cli(aws, "get", "orders")
    assert table.returncode == 0 and "default/orders" in table.stdout and "10%" in table.stdout
    assert cli(aws, "get", "nobody").returncode == 1


def test_get_shows_the_history_with_who_asked(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    write_document(tmp_path, rollout_document("orders", function="orders", version="2", strategy=canary(10, 600)))
    assert cli(aws, "run", "--source", str(tmp_path), "--once").returncode == 0

    assert cli(aws, "abort", "orders").returncode == 0
    assert cli(aws, "run", "--source", str(tmp_path), "--once").returncode == 0

    [orders] = json.loads(cli(aws, "get", "orders", "-o", "json").stdout)
    assert orders["phase"] == "RolledBack"
    [aborted] = [entry for entry in orders["history"] if entry["outcome"] == "Aborted"]
    assert aborted["version"] == "2" and aborted["by"].startswith("arn:aws:sts::")
    # The record keeps the plan's length, so the step reads the same without the document: rolled back, step 0.
    assert (orders["step"], orders["steps"]) == (0, 3)


def test_a_publish_that_aws_would_refuse_is_invalid_everywhere_and_never_tried(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    document = rollout_document("orders", function="orders", version="2", strategy=canary(10, 60))
    del document["spec"]["version"]
    document["spec"]["publish"] = {"codeSha256": "A" * 43 + "="}  # not the code of $LATEST, nor of any version
    write_document(tmp_path, document)
    aws.clear_calls()

    plan = cli(aws, "plan", str(tmp_path))
    assert plan.returncode == 1
    assert "phase: Invalid  reason: CodeMismatch" in plan.stdout and "spec.publish.codeSha256" in plan.stdout
    once = cli(aws, "run", "--source", str(tmp_path), "--once")
    assert once.returncode == 1
    rows = {row["name"]: row for row in json.loads(cli(aws, "get", "-o", "json", "--source", str(tmp_path)).stdout)}
    assert (rows["default/orders"]["phase"], rows["default/orders"]["reason"]) == ("Invalid", "CodeMismatch")
    assert write_calls(aws) == []  # no PublishVersion tried, nothing written
    assert "PublishVersion" not in [call.operation for call in aws.calls()]


def test_get_and_plan_take_the_ownership_config_the_daemon_uses(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    docs = tmp_path / "docs"
    docs.mkdir()
    write_document(docs, rollout_document("orders", function="orders", version="2", strategy=canary(50, 60)))
    config = tmp_path / "ownership.yaml"
    config.write_text("default:\n  - 'payments-*'\n")  # default may not move orders
    aws.clear_calls()

    plan = cli(aws, "plan", str(docs), "--ownership-config", str(config))
    assert plan.returncode == 1 and "reason: NotOwner" in plan.stdout
    rows = json.loads(cli(aws, "get", "-o", "json", "--source", str(docs), "--ownership-config", str(config)).stdout)
    [orders] = [row for row in rows if row["name"] == "default/orders"]
    assert (orders["phase"], orders["reason"]) == ("Invalid", "NotOwner")
    # Without it, the same rollout would move: what a daemon without the config would do.
    assert cli(aws, "plan", str(docs)).returncode == 0
    assert write_calls(aws) == []


def test_an_invalid_document_is_one_invalid_row_under_its_name_and_the_watch_lists_its_errors(
    aws: Emulator, tmp_path: Path
) -> None:
    seed_alias(aws, "orders")
    path = write_document(
        tmp_path, rollout_document("orders", function="orders", version="2", strategy=canary(10, 600))
    )
    assert cli(aws, "run", "--source", str(tmp_path), "--once").returncode == 0  # at 10%, recorded
    # Two mistakes in the document, as a fresh reader (no memory of the last valid version) sees it.
    path.write_text(
        path.read_text().replace("setWeight: 10", "setWeight: 150").replace("alias: live", "alias: $LATEST")
    )

    rows = [row for row in json.loads(cli(aws, "get", "-o", "json", "--source", str(tmp_path)).stdout)]
    [orders] = rows  # once: no second row named after the file
    assert (orders["name"], orders["phase"], orders["canary"], orders["weight"]) == (
        "default/orders",
        "Invalid",
        "2",
        10,
    )
    assert len(orders["errors"]) == 2 and all(error.startswith(f"{path.as_posix()}:") for error in orders["errors"])
    table = cli(aws, "get", "--source", str(tmp_path)).stdout
    assert table.count("default/orders") == 1 and "Invalid" in table and "(and 1 more)" in table

    watch = cli(aws, "get", "orders", "--watch", "--source", str(tmp_path), "--timeout", "1", "--until-done")
    assert "Invalid" in watch.stdout and "setWeight" in watch.stdout and "$LATEST" in watch.stdout

    # The daemon holds it the same way after a restart, with where the record says it stands.
    once = cli(aws, "run", "--source", str(tmp_path), "--once", "--log-format", "json")
    assert once.returncode == 1
    assert alias_routing(aws, "orders", "live") == ("1", {"2": 0.1})
