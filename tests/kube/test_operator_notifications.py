"""Notifications in Kubernetes mode: ``lambda-rollouts operator --notifications FILE`` as the Helm chart runs it.

The config is a file in a directory, as the chart mounts its ConfigMap; the Slack URL is a file of a
mounted Secret (with the trailing newline ``kubectl create secret --from-file`` leaves), the webhook's
HMAC secret and the signing key are environment variables from a Secret (``secretKeyRef``). The
operator is a subprocess acting as the controller's ServiceAccount on the real apiserver, against the
strict AWS emulator; the receiver is on a real socket. A promote link from the WaitingForPromotion
message, posted to the operator's own HTTP server, reaches the leader as the resource's request
annotation (what ``kubectl lambda-rollouts promote`` writes), and history names the approver the link
was issued to.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.request
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.e2e.webhooks import Received, Receiver
from tests.integration.helpers import alias_routing, canary, rollout_document, seed_alias
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import apply_rollout, eventually, operator, status_of

HOOK_SECRET = "kube-hook-secret-31d7a0"
SIGNING_KEY = "kube-gate-signing-key-0123456789abcdef-0123"
SLACK_PATH = "/services/T0KUBE/B0KUBE/kubeSlackPathSecret"
FUNCTION, ALIAS = "orders", "live"


def headlines(requests: list[Received]) -> list[str]:
    return [str(request.json()["blocks"][0]["text"]["text"]) for request in requests]


def promote_link(message: dict[str, Any]) -> str:
    (actions,) = [block for block in message["blocks"] if block["type"] == "actions"]
    return next(str(button["url"]) for button in actions["elements"] if button["action_id"] == "promote")


def test_the_operator_reads_a_mounted_config_and_a_link_promotes_through_the_resource(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    seed_alias(aws, FUNCTION, versions=2)
    mounted = tmp_path / "etc" / "lambda-rollouts"
    (mounted / "notifications").mkdir(parents=True)
    (mounted / "slack").mkdir()
    config = mounted / "notifications" / "notifications.yaml"
    with Receiver() as receiver:
        (mounted / "slack" / "url").write_text(f"{receiver.url}{SLACK_PATH}\n")
        env = {"OPS_HOOK_SECRET": HOOK_SECRET, "GATE_KEY": SIGNING_KEY}
        # The links' base URL is the operator's own server: its port is only known once it is chosen,
        # so the config names a placeholder the test fills in before the operator reads the file.
        with operator(
            kubeconfig=controller_kubeconfig,
            aws=aws,
            directory=tmp_path,
            extra_args=["--notifications", str(config)],
            env=env,
            before_start=lambda port: config.write_text(
                "targets:\n"
                f"  - {{name: team-slack, slack: {{urlFrom: {{file: {mounted / 'slack' / 'url'}}}}}}}\n"
                f"  - {{name: ops, webhook: {{url: '{receiver.url}/ops', secretFrom: {{env: OPS_HOOK_SECRET}}}}}}\n"
                "subscriptions:\n"
                "  - {target: team-slack, on: [WaitingForPromotion, Promoted]}\n"
                "  - {target: ops, on: [Started, Promoted]}\n"
                f"links: {{baseUrl: 'http://127.0.0.1:{port}', signingKeyFrom: {{env: GATE_KEY}}}}\n"
            ),
        ) as op:
            doc = rollout_document(FUNCTION, function=FUNCTION, alias=ALIAS, version="2", strategy=canary(20, None))
            doc["metadata"]["namespace"] = namespace
            apply_rollout(control_plane, doc)
            receiver.wait_for(lambda: len(receiver.at(SLACK_PATH)) == 1, what="WaitingForPromotion")
            request = urllib.request.Request(promote_link(receiver.at(SLACK_PATH)[0].json()), method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
            receiver.wait_for(
                lambda: len(receiver.at(SLACK_PATH)) == 2 and len(receiver.at("/ops")) == 2,
                what="Promoted on both targets",
            )
            status = eventually(
                lambda: (s := status_of(control_plane, namespace, FUNCTION)).get("phase") == "Healthy" and s,
                what="Healthy",
            )
            assert SIGNING_KEY not in op.text() and HOOK_SECRET not in op.text() and SLACK_PATH not in op.text()
    assert headlines(receiver.at(SLACK_PATH)) == [
        f"⏸️ Waiting for promotion: {namespace}/{FUNCTION}",
        f"✅ Promoted: {namespace}/{FUNCTION}",
    ]
    for message in receiver.at("/ops"):
        timestamp = message.headers["X-Lambda-Rollouts-Timestamp"]
        mac = hmac.new(HOOK_SECRET.encode(), f"{timestamp}.".encode() + message.body, hashlib.sha256)
        assert message.headers["X-Lambda-Rollouts-Signature"] == f"sha256={mac.hexdigest()}"
    assert [message.json()["type"] for message in receiver.at("/ops")] == [
        "dev.rollouts.lambda.started",
        "dev.rollouts.lambda.promoted",
    ]
    assert {(entry["outcome"], entry["reason"], entry["by"]) for entry in status["history"]} >= {
        ("Requested", "promote", "link:team-slack")
    }
    assert alias_routing(aws, FUNCTION, ALIAS) == ("2", {})
