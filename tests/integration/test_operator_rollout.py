"""The operator end to end: kopf in-process against the emulated apiserver, AWS from the strict emulator.

Each test starts an emulated cluster, applies LambdaRollouts as a user would and checks what the
user sees (``.status``, Events, ``kubectl lambda-rollouts``) against what AWS really did (the
emulator's alias state and call log). Intervals are short and pauses last a second or two.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import (
    alias_routing,
    canary,
    put_errors_alarm,
    rollout_document,
    write_calls,
    written_weights,
)
from tests.integration.kube_harness import (
    KubeCluster,
    env_vars,
    eventually,
    kube_cluster,
    operator_running,
    status_history,
)

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
    # The test's own CreateAlias, then 20%, 60% and the final switch: one write per step, no more.
    assert len(written_weights(aws, FUNCTION, ALIAS)) == 4


def plugin(cluster: KubeCluster, *argv: str) -> int:
    """``kubectl lambda-rollouts ...`` with the test cluster's kubeconfig (kubectl runs in a subprocess)."""
    from controller.commands import kubectl as kubectl_plugin

    with env_vars(KUBECONFIG=str(cluster.kubeconfig)):
        return kubectl_plugin.main(list(argv))


def test_an_alarm_rolls_back_with_its_name_in_status_and_event(aws: Emulator, tmp_path: Path) -> None:
    seed(aws)
    put_errors_alarm(aws.client("cloudwatch"), "orders-errors", function=FUNCTION, TreatMissingData="notBreaching")
    aws.set_behaviour(FUNCTION, "2", error_rate=1.0)  # the canary fails every call

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url):

            def clients_call_until_rolled_back() -> bool:
                # Callers keep invoking the alias, so every period the alarm is evaluated over has
                # the canary's errors in it until the rollback takes the canary out of the routing.
                aws.traffic(FUNCTION, ALIAS, count=20)
                return phase_of(cluster, "orders") == "RolledBack"

            doc = document("orders", "2", canary(50, None))
            doc["spec"]["analysis"] = {"alarms": ["orders-errors"]}
            await cluster.apply(doc)
            await eventually(lambda: phase_of(cluster, "orders") == "Paused", timeout=20, what="Paused")
            await eventually(clients_call_until_rolled_back, timeout=20, what="RolledBack")
            status = cluster.emulator.rollout("orders")["status"]
            assert "orders-errors" in f"{status['reason']} {status['message']}"
            events = await eventually(
                lambda: [e for e in cluster.emulator.events() if e["reason"] == status["reason"]], what="the Event"
            )
            assert events[-1]["type"] == "Warning" and "orders-errors" in events[-1]["message"] + events[-1]["reason"]

            # Deleted and applied again (GitOps prune/replace): the failed version is not retried.
            writes = len(written_weights(aws, FUNCTION, ALIAS))
            await cluster.delete("orders")
            await eventually(lambda: cluster.emulator.rollout("orders") is None, what="deletion")
            await cluster.apply(doc)
            await eventually(lambda: phase_of(cluster, "orders") == "RolledBack", timeout=20, what="RolledBack again")
            await asyncio.sleep(1.0)
            assert len(written_weights(aws, FUNCTION, ALIAS)) == writes

    asyncio.run(scenario())
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})


def test_plugin_promote_full_and_abort_act_through_the_resource(aws: Emulator, tmp_path: Path) -> None:
    seed(aws)

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url):
            await cluster.apply(document("orders", "2", canary(10, None, 50, None)))
            await eventually(lambda: phase_of(cluster, "orders") == "Paused", timeout=20, what="Paused")
            assert await asyncio.to_thread(plugin, cluster, "promote", "orders", "--full") == 0
            await eventually(lambda: phase_of(cluster, "orders") == "Healthy", timeout=20, what="Healthy")
            assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
            annotations = cluster.emulator.rollout("orders")["metadata"].get("annotations") or {}
            assert "lambda.rollouts.dev/request" not in annotations  # handled requests are cleared

            await cluster.patch_spec("orders", {"version": "3"})
            await eventually(
                lambda: cluster.emulator.rollout("orders")["status"].get("canaryVersion") == "3", timeout=20
            )
            await eventually(lambda: phase_of(cluster, "orders") == "Paused", timeout=20, what="Paused on 3")
            assert await asyncio.to_thread(plugin, cluster, "abort", "orders") == 0
            await eventually(lambda: phase_of(cluster, "orders") == "RolledBack", timeout=20, what="aborted")
            assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
            status = cluster.emulator.rollout("orders")["status"]
            assert status["observedGeneration"] == 2
            assert [h["version"] for h in status["history"]][-2:] == ["2", "3"]
            assert await asyncio.to_thread(plugin, cluster, "get", "orders") == 0
            assert await asyncio.to_thread(plugin, cluster, "abort", "no-such-rollout") == 1

    asyncio.run(scenario())


def test_an_invalid_resource_gets_path_errors_and_no_aws_write(aws: Emulator, tmp_path: Path) -> None:
    seed(aws)
    before = write_calls(aws)

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url):
            await cluster.apply(document("orders", "2", canary(150, 5)))
            await eventually(lambda: phase_of(cluster, "orders") == "Invalid", timeout=20, what="Invalid")
            errors = cluster.emulator.rollout("orders")["status"]["errors"]
            assert any(e.startswith("spec.strategy.canary.steps[0].setWeight") for e in errors), errors
            await asyncio.sleep(1.0)

    asyncio.run(scenario())
    assert write_calls(aws) == before
    assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})


def test_delete_and_reapply_mid_rollout_resumes_and_revert_on_deletion_restores_stable(
    aws: Emulator, tmp_path: Path
) -> None:
    seed(aws)

    async def scenario() -> None:
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url):
            doc = document("orders", "2", canary(30, None, 60, None))
            await cluster.apply(doc)
            await eventually(lambda: phase_of(cluster, "orders") == "Paused", timeout=20, what="Paused")
            assert "finalizers" not in cluster.emulator.rollout("orders")["metadata"]
            await cluster.delete("orders")
            await eventually(lambda: cluster.emulator.rollout("orders") is None, what="deletion")
            await asyncio.sleep(0.5)
            assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {"2": 0.3})  # left as it is

            writes = len(written_weights(aws, FUNCTION, ALIAS))
            await cluster.apply(doc)
            await eventually(lambda: phase_of(cluster, "orders") == "Paused", timeout=20, what="resumed")
            status = cluster.emulator.rollout("orders")["status"]
            assert (status["canaryWeight"], status["currentStep"]) == (30, 2)
            assert len(written_weights(aws, FUNCTION, ALIAS)) == writes  # resumed, not restarted

            # With revertOnDeletion the operator holds the object (finalizer) until the alias is back.
            await cluster.patch_spec("orders", {"revertOnDeletion": True})
            await eventually(
                lambda: (
                    "lambda.rollouts.dev/revert-on-deletion"
                    in (cluster.emulator.rollout("orders")["metadata"].get("finalizers") or [])
                ),
                what="the finalizer",
            )
            await cluster.delete("orders")
            await eventually(lambda: cluster.emulator.rollout("orders") is None, timeout=20, what="release")
            assert alias_routing(aws, FUNCTION, ALIAS) == ("1", {})

    asyncio.run(scenario())
