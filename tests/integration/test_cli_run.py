"""The ``run`` daemon as a process: it follows file changes at once and SIGTERM ends it with 0 quickly."""

from __future__ import annotations

from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import (
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


def test_run_follows_new_files_and_exits_on_sigterm(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "daemon")
    source = tmp_path / "rollouts"
    source.mkdir()
    port = free_port()
    args = ["run", "--source", str(source), "--interval", "0.2", "--log-format", "json", "--metrics-port", str(port)]
    log = tmp_path / "run.log"
    with daemon(args, env=cli_env(aws), log=log) as process:
        # Ready: it has read the (empty) directory and ticked once, so the document below is a change.
        aws.wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), timeout=20)
        write_document(source, rollout_document("daemon", function="daemon", version="2", strategy=canary(30, None)))
        aws.wait_for(lambda: alias_routing(aws, "daemon", "live") == ("1", {"2": 0.3}), timeout=20)

        stop_with_sigterm(process)
    assert '"rollout":"daemon"' in log.read_text().replace(" ", "")
