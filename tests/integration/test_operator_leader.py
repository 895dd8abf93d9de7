"""Two operator replicas against one emulated apiserver: exactly one writes, and the other takes over.

The replicas are told apart by the User-Agent of their Kubernetes requests (each names its Lease
identity); AWS writes are checked through the alias, which only the leader's engine may move.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, rollout_document, seed_alias
from tests.integration.kube_harness import LEASES, KubeCluster, eventually, kube_cluster, operator_running

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def holder(cluster: KubeCluster) -> str | None:
    key = (LEASES, "default", "lambda-rollouts-leader")
    if key not in cluster.emulator.objects or cluster.emulator.objects[key].deleted:
        return None
    return str(cluster.emulator.objects[key].raw["spec"].get("holderIdentity") or "") or None


def writes_by(cluster: KubeCluster, identity: str) -> list[Any]:
    return [
        r
        for r in cluster.emulator.received()
        if r.method.value in WRITES and f"({identity})" in r.headers.get("User-Agent", "")
    ]


def phase_of(cluster: KubeCluster, name: str) -> str | None:
    return ((cluster.emulator.rollout(name) or {}).get("status") or {}).get("phase")


def test_two_replicas_only_the_leader_writes_and_the_standby_takes_over(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders", versions=3)

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, contextlib.AsyncExitStack() as first:
            await first.enter_async_context(operator_running(cluster, aws.url, identity="op-a"))
            await eventually(lambda: holder(cluster) == "op-a", what="op-a to lead")
            async with operator_running(cluster, aws.url, identity="op-b"):
                doc = rollout_document("orders", function="orders", alias="live", version="2", strategy=canary(20, 1))
                await cluster.apply(doc)
                await eventually(lambda: phase_of(cluster, "orders") == "Healthy", timeout=20, what="Healthy")
                assert holder(cluster) == "op-a"
                assert writes_by(cluster, "op-a")
                assert writes_by(cluster, "op-b") == []

                # op-a stops cleanly and releases the Lease: op-b leads at once (no lease-duration wait)
                # and its fresh engine adopts the rollout from the durable record: nothing moves.
                await first.aclose()
                await eventually(lambda: holder(cluster) == "op-b", timeout=10, what="op-b to take over")
                await asyncio.sleep(1.0)
                assert phase_of(cluster, "orders") == "Healthy"
                assert writes_by(cluster, "op-b")  # it writes now (the Lease first of all)

                # ... and carries on with the next rollout.
                await cluster.patch_spec("orders", {"version": "3", "strategy": {"canary": None, "allAtOnce": {}}})
                await eventually(
                    lambda: cluster.emulator.rollout("orders")["status"].get("stableVersion") == "3",
                    timeout=20,
                    what="version 3 by the new leader",
                )

    asyncio.run(scenario())
    assert alias_routing(aws, "orders", "live") == ("3", {})
