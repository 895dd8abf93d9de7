"""Two operator shards against one emulated apiserver: each serves the resources its selector matches.

``operator --selector shard=a`` and ``--selector shard=b`` run side by side, each leading a Lease of its
own (named from its selector); each rollout is moved and shown by exactly one of them, and a resource
relabelled into the other shard is taken over by it from the durable record.
"""

from __future__ import annotations

import asyncio
from typing import Any

from controller.emulator import Emulator
from controller.kube.selector import Selector
from tests.integration.helpers import alias_routing, canary, rollout_document, seed_alias
from tests.integration.kube_harness import LEASES, KubeCluster, eventually, kube_cluster, operator_running

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def lease_holder(cluster: KubeCluster, name: str) -> str | None:
    key = (LEASES, "default", name)
    if key not in cluster.emulator.objects or cluster.emulator.objects[key].deleted:
        return None
    return str(cluster.emulator.objects[key].raw["spec"].get("holderIdentity") or "") or None


def status_writers(cluster: KubeCluster, name: str) -> set[str]:
    """Which replicas (by the identity in their User-Agent) patched ``name``'s status."""
    found: set[str] = set()
    for request in cluster.emulator.received():
        if request.method.value in WRITES and request.url.path.endswith(f"/lambdarollouts/{name}/status"):
            agent = request.headers.get("User-Agent", "")
            found.add(agent[agent.rfind("(") + 1 : agent.rfind(")")])
    return found


def labelled(name: str, shard: str) -> dict[str, Any]:
    document = rollout_document(name, function=name, alias="live", version="2", strategy=canary(50, 0.2))
    document["metadata"]["labels"] = {"shard": shard}
    return document


def phase_of(cluster: KubeCluster, name: str) -> str | None:
    return ((cluster.emulator.rollout(name) or {}).get("status") or {}).get("phase")


def test_each_shard_serves_its_own_resources_under_its_own_lease(aws: Emulator, tmp_path: Any) -> None:
    seed_alias(aws, "orders", versions=3)
    seed_alias(aws, "billing", versions=3)
    lease_a = Selector.parse("shard=a").lease_name("lambda-rollouts-leader")
    lease_b = Selector.parse("shard=b").lease_name("lambda-rollouts-leader")

    async def scenario() -> None:
        async with (
            kube_cluster(tmp_path) as cluster,
            operator_running(cluster, aws.url, identity="op-a", extra_args=["--selector=shard=a"]),
            operator_running(cluster, aws.url, identity="op-b", extra_args=["--selector=shard=b"]),
        ):
            await eventually(lambda: lease_holder(cluster, lease_a) == "op-a", what="op-a to lead shard a")
            await eventually(lambda: lease_holder(cluster, lease_b) == "op-b", what="op-b to lead shard b")
            await cluster.apply(labelled("orders", "a"))
            await cluster.apply(labelled("billing", "b"))
            await eventually(lambda: phase_of(cluster, "orders") == "Healthy", timeout=20, what="orders Healthy")
            await eventually(lambda: phase_of(cluster, "billing") == "Healthy", timeout=20, what="billing Healthy")
            assert status_writers(cluster, "orders") == {"op-a"}
            assert status_writers(cluster, "billing") == {"op-b"}
            assert lease_holder(cluster, "lambda-rollouts-leader") is None

            # orders moves to shard b and on to version 3: op-b resumes it from its record.
            await cluster.merge_patch("orders", {"metadata": {"labels": {"shard": "b"}}, "spec": {"version": "3"}})
            await eventually(
                lambda: (cluster.emulator.rollout("orders") or {}).get("status", {}).get("stableVersion") == "3",
                timeout=20,
                what="orders on version 3 by shard b",
            )
            assert "op-b" in status_writers(cluster, "orders")
            await asyncio.sleep(0.5)

    asyncio.run(scenario())
    assert alias_routing(aws, "orders", "live") == ("3", {})
    assert alias_routing(aws, "billing", "live") == ("2", {})
