"""Notifications in Kubernetes mode: ``lambda-rollouts operator --notifications FILE`` as the Helm chart runs it.

The config is a file in a directory, as the chart mounts its ConfigMap; the Slack URL is a file of a
mounted Secret (with the trailing newline ``kubectl create secret --from-file`` leaves), the webhook's
HMAC secret and the signing key are environment variables from a Secret (``secretKeyRef``). The
operator runs in-process (the real command wiring) against the emulated apiserver and the strict AWS
emulator; the receiver is on a real socket. A promote link from the WaitingForPromotion message, posted
to the operator's own HTTP server, reaches the leader as the resource's request annotation (what
``kubectl lambda-rollouts promote`` writes), and history names the approver the link was issued to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from pathlib import Path
from typing import Any

import aiohttp

from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, free_port, rollout_document
from tests.integration.kube_harness import env_vars, eventually, kube_cluster, operator_running
from tests.integration.receiver import Received, Receiver

HOOK_SECRET = "kube-hook-secret-31d7a0"
SIGNING_KEY = "kube-gate-signing-key-0123456789abcdef-0123"
SLACK_PATH = "/services/T0KUBE/B0KUBE/kubeSlackPathSecret"


def headlines(requests: list[Received]) -> list[str]:
    return [str(request.json()["blocks"][0]["text"]["text"]) for request in requests]


def promote_link(message: dict[str, Any]) -> str:
    (actions,) = [block for block in message["blocks"] if block["type"] == "actions"]
    return next(str(button["url"]) for button in actions["elements"] if button["action_id"] == "promote")


def test_the_operator_reads_a_mounted_config_and_a_link_promotes_through_the_resource(
    aws: Emulator, tmp_path: Path
) -> None:
    aws.seed_function("orders", versions=2)
    aws.client("lambda").create_alias(FunctionName="orders", Name="live", FunctionVersion="1")
    port = free_port()
    mounted = tmp_path / "etc" / "lambda-rollouts"
    (mounted / "notifications").mkdir(parents=True)
    (mounted / "slack").mkdir()
    config = mounted / "notifications" / "notifications.yaml"

    async def scenario() -> None:
        async with Receiver() as receiver:
            (mounted / "slack" / "url").write_text(f"{receiver.url}{SLACK_PATH}\n")
            config.write_text(
                "targets:\n"
                f"  - {{name: team-slack, slack: {{urlFrom: {{file: {mounted / 'slack' / 'url'}}}}}}}\n"
                f"  - {{name: ops, webhook: {{url: '{receiver.url}/ops', secretFrom: {{env: OPS_HOOK_SECRET}}}}}}\n"
                "subscriptions:\n"
                "  - {target: team-slack, on: [WaitingForPromotion, Promoted]}\n"
                "  - {target: ops, on: [Started, Promoted]}\n"
                f"links: {{baseUrl: 'http://127.0.0.1:{port}', signingKeyFrom: {{env: GATE_KEY}}}}\n"
            )
            with env_vars(OPS_HOOK_SECRET=HOOK_SECRET, GATE_KEY=SIGNING_KEY):
                extra = ["--notifications", str(config), "--metrics-port", str(port)]
                async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url, extra_args=extra):
                    await cluster.apply(
                        rollout_document("orders", function="orders", version="2", strategy=canary(20, None))
                    )
                    waiting = await eventually(lambda: receiver.at(SLACK_PATH), timeout=20, what="WaitingForPromotion")
                    async with aiohttp.ClientSession() as http, http.post(promote_link(waiting[0].json())) as answer:
                        assert answer.status == 200, await answer.text()
                    await eventually(
                        lambda: len(receiver.at(SLACK_PATH)) == 2 and len(receiver.at("/ops")) == 2,
                        timeout=20,
                        what="Promoted on both targets",
                    )
                    status = await eventually(
                        lambda: (
                            (cluster.emulator.rollout("orders") or {}).get("status", {}).get("phase") == "Healthy"
                            and cluster.emulator.rollout("orders")
                        ),
                        what="Healthy",
                    )
                    history = status["status"]["history"]
            assert headlines(receiver.at(SLACK_PATH)) == [
                "⏸️ Waiting for promotion: default/orders",
                "✅ Promoted: default/orders",
            ]
            for request in receiver.at("/ops"):
                timestamp = request.headers["X-Lambda-Rollouts-Timestamp"]
                mac = hmac.new(HOOK_SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
                assert request.headers["X-Lambda-Rollouts-Signature"] == f"sha256={mac.hexdigest()}"
            assert [request.json()["type"] for request in receiver.at("/ops")] == [
                "dev.rollouts.lambda.started",
                "dev.rollouts.lambda.promoted",
            ]
            assert {(entry["outcome"], entry["reason"], entry["by"]) for entry in history} >= {
                ("Requested", "promote", "link:team-slack")
            }

    asyncio.run(scenario())
    assert alias_routing(aws, "orders", "live") == ("2", {})
