"""The operator under apiserver faults that a real apiserver does not produce on demand (kmock).

Everything else about Kubernetes mode runs against a real kube-apiserver in ``tests/kube/``; these
need a 5xx at a chosen moment, so the emulated apiserver answers with ``Fault``s
(``tests/integration/kube_harness.py``) while the operator runs in-process against it:

- status patches refused: the status the engine reported once is written when the apiserver takes
  it again (the engine would not report it a second time: a finished rollout has no next change);
- Lease renewals refused: the leader steps down within its renew deadline, before anyone else could
  take the Lease, writes nothing while it does not lead, and leads again once renewals go through;
- the listing refused: the replica is not ready until it can list its resources.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controller.commands.rollouts import new_request
from controller.core.codec import encode_request
from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, free_port, rollout_document, seed_alias, write_calls
from tests.integration.kube_harness import Fault, KubeCluster, eventually, kube_cluster, operator_running

FUNCTION, ALIAS = "orders", "live"
LEASE_DURATION = 2.0  # renew deadline 1.33 s, retry period 0.27 s


def status_of(cluster: KubeCluster) -> dict[str, Any]:
    return dict((cluster.emulator.rollout(FUNCTION) or {}).get("status") or {})


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_status_patches_refused_with_a_5xx_are_made_again_once_the_apiserver_takes_them(
    aws: Emulator, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=2)

    async def scenario() -> None:
        async with kube_cluster() as cluster, operator_running(cluster, aws.url):
            refused = Fault("PATCH", "/status")
            cluster.emulator.faults.append(refused)
            await cluster.apply(rollout_document(FUNCTION, function=FUNCTION, version="2", strategy={"allAtOnce": {}}))
            await eventually(lambda: alias_routing(aws, FUNCTION, ALIAS) == ("2", {}), timeout=20, what="promoted")
            # The engine has nothing more to report, yet the patch is tried again, tick after tick.
            tried = refused.served
            await eventually(lambda: refused.served >= tried + 3, what="the patch tried again")
            assert status_of(cluster) == {}
            cluster.emulator.faults.remove(refused)
            await eventually(lambda: status_of(cluster).get("phase") == "Healthy", what="the status written")
            assert status_of(cluster)["stableVersion"] == "2"

    asyncio.run(scenario())


def test_a_leader_whose_lease_renewals_fail_steps_down_in_time_writes_nothing_then_leads_again(
    aws: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_alias(aws, FUNCTION, versions=2)
    caplog.set_level(logging.INFO, logger="controller.leader")

    def said(text: str) -> int:
        return sum(text in record.getMessage() for record in caplog.records)

    async def scenario() -> None:
        async with (
            kube_cluster() as cluster,
            operator_running(cluster, aws.url, lease_duration=LEASE_DURATION),
        ):
            await cluster.apply(rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(20, None)))
            await eventually(lambda: status_of(cluster).get("phase") == "Paused", timeout=20, what="Paused")

            failing = Fault("PUT", "/leases/")
            cluster.emulator.faults.append(failing)
            refused_at = time.monotonic()
            await eventually(lambda: said("could not renew the lease"), what="the step-down")
            # Down before the Lease it last renewed could expire for anyone else.
            assert time.monotonic() - refused_at < LEASE_DURATION

            # Not leading: a promote waits, nothing is written.
            request = encode_request(new_request("promote", full=True, by="tester", now=time.time()))
            await cluster.patch("orders", {"metadata": {"annotations": {"lambda.rollouts.dev/request": request}}})
            writes = write_calls(aws)
            await asyncio.sleep(1.0)
            assert write_calls(aws) == writes and alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.2})

            cluster.emulator.faults.remove(failing)
            await eventually(lambda: said("became the leader") == 2, what="leading again")
            await eventually(lambda: status_of(cluster).get("phase") == "Healthy", timeout=20, what="promoted")

    asyncio.run(scenario())
    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})


def test_a_replica_is_not_ready_until_the_apiserver_answers_its_listing(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, FUNCTION, versions=2)
    port = free_port()

    async def scenario() -> None:
        async with kube_cluster() as cluster:
            refused = Fault("GET", "/lambdarollouts")  # kopf's listing and watch, and our own check
            cluster.emulator.faults.append(refused)
            await cluster.apply(rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(20, None)))
            async with operator_running(cluster, aws.url, extra_args=[f"--metrics-port={port}"]):
                await eventually(lambda: refused.served >= 2, what="the listing refused")
                # Leading and AWS reachable, but what it serves cannot be listed: not ready.
                await eventually(lambda: readyz(port) == (503, {"status": "not ready", "missing": ["sources_loaded"]}))
                cluster.emulator.faults.remove(refused)
                await eventually(lambda: readyz(port)[0] == 200, timeout=15, what="ready")
                await eventually(lambda: status_of(cluster).get("phase") == "Paused", timeout=15, what="Paused")

    asyncio.run(scenario())
