"""The ``run`` daemon as a process: it follows file changes at once and SIGTERM ends it with 0 quickly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import CLI, alias_routing, canary, cli_env, rollout_document, seed_alias, write_document


def test_run_follows_new_files_and_exits_on_sigterm(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "daemon")
    args = [*CLI, "run", "--source", str(tmp_path), "--interval", "0.2", "--log-format", "json"]
    process = subprocess.Popen(args, env=cli_env(aws), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # started with an empty directory
        write_document(tmp_path, rollout_document("daemon", function="daemon", version="2", strategy=canary(30, None)))
        aws.wait_for(lambda: alias_routing(aws, "daemon", "live") == ("1", {"2": 0.3}), timeout=20)

        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert time.monotonic() - stopping < 10
    finally:
        if process.poll() is None:
            process.kill()
    assert process.stderr is not None
    log = process.stderr.read().decode()
    assert '"rollout":"daemon"' in log.replace(" ", "")
