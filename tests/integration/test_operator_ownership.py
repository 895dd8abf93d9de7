"""The operator enforces ownership: a LambdaRollout in a namespace the ownership config does not allow
ends Invalid with reason NotOwner on its ``.status``, and AWS sees no write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, rollout_document, seed_alias, write_calls
from tests.integration.kube_harness import eventually, kube_cluster, operator_running


def test_a_rollout_in_a_namespace_not_allowed_is_invalid_not_owner(aws: Emulator, tmp_path: Path) -> None:
    seed_alias(aws, "orders")
    aws.clear_calls()
    config = tmp_path / "ownership.yaml"
    config.write_text("payments: [orders]\n")  # only namespace payments may move orders
    document = rollout_document("orders", function="orders", alias="live", version="2", strategy=canary(50, 1))

    async def scenario() -> dict[str, object]:
        extra = [f"--ownership-config={config}"]
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url, extra_args=extra):
            await cluster.apply(document)  # in namespace default

            def status() -> dict[str, object]:
                return dict((cluster.emulator.rollout("orders") or {}).get("status") or {})

            await eventually(lambda: status().get("phase") == "Invalid", timeout=30, what="Invalid")
            return status()

    status = asyncio.run(scenario())
    assert status["reason"] == "NotOwner"
    assert "namespace default" in str(status["message"]) and "orders" in str(status["message"])
    assert write_calls(aws) == []
    assert alias_routing(aws, "orders", "live") == ("1", {})
