"""The operator end to end: kopf in-process against the emulated apiserver, AWS from the strict emulator.

Each test starts an emulated cluster, applies LambdaRollouts as a user would and checks what the
user sees (``.status``, Events, ``kubectl lambda-rollouts``) against what AWS really did (the
emulator's alias state and call log). Intervals are short and pauses last a second or two.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from helpers import alias_routing, canary, rollout_document, written_weights
from kube_harness import KubeCluster, eventually, kube_cluster, operator_running, status_history

from controller.emulator import Emulator

FUNCTION, ALIAS = "orders", "live"


def seed(aws: Emulator, versions: int = 3) -> None:
    aws.seed_function(FUNCTION, versions=versions)
    aws.client("lambda").create_alias(FunctionName=FUNCTION, Name=ALIAS, FunctionVersion="1")


def document(name: str, version: str, strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = rollout_document(name, function=FUNCTION, alias=ALIAS, version=version, strategy=strategy)
    doc["spec"].update(spec)
    return doc


def phase_of(cluster: KubeCluster, name: str) -> str | None:
    obj = cluster.emulator.rollout(name)
    return (obj or {}).get("status", {}).get("phase")


def test_applying_a_rollout_drives_the_alias_and_status_follows_every_step(aws: Emulator, tmp_path: Path) -> None:
    seed(aws)

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url):
            await cluster.apply(document("orders", "2", canary(20, 1, 60, 1)))
            await eventually(lambda: phase_of(cluster, "orders") == "Healthy", timeout=30, what="Healthy")

            statuses = status_history(cluster, "orders")
            weights = [s["canaryWeight"] for s in statuses if s.get("phase") in ("Progressing", "Paused")]
            assert 20 in weights and 60 in weights and weights.index(20) < weights.index(60)
            final = statuses[-1]
            assert final["stableVersion"] == "2" and final.get("canaryVersion") is None
            assert final["observedGeneration"] == 1
            assert {c["type"]: c["status"] for c in final["conditions"]}["Ready"] == "True"
            events = cluster.emulator.events()
            assert events and all(e["involvedObject"]["name"] == "orders" for e in events)

    asyncio.run(scenario())
    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
    # The first write is the test's own CreateAlias (version 1, no weights).
    assert written_weights(aws, FUNCTION, ALIAS) == [(None, 0.0), ("2", 0.2), ("2", 0.6), (None, 0.0)]
