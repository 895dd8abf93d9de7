"""``operator --alarm-events``: the leader consumes the alarm events and rolls back at once, whatever the tick.

The operator is a subprocess acting as the controller's ServiceAccount on the real apiserver, AWS
the strict emulator (its SetAlarmState is the transition, its EventBridge rule delivers the event to
the queue). The operator ticks every 30 s: a rollback within a second or so can only come from the
event. A replica that does not lead never receives a message: SQS keeps them for the one that will.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

from controller.emulator import Emulator
from tests.integration.helpers import (
    alias_routing,
    canary,
    platform_queue,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    set_alarm,
)
from tests.kube.controlplane import ControlPlane
from tests.kube.operators import CONTROLLER_NAMESPACE, LEASE_NAME, apply_rollout, eventually, holder, operator

FUNCTION, ALARM = "orders", "orders-errors"
# Far under the 30 s tick, generous for two loaded cores: a rollback that waited for the tick fails.
AT_ONCE = 3.0


def watched_canary(namespace: str) -> dict[str, Any]:
    doc = rollout_document(FUNCTION, function=FUNCTION, version="2", strategy=canary(10, None), alarms=[ALARM])
    doc["metadata"]["namespace"] = namespace
    return doc


def hold_lease(plane: ControlPlane, *, by: str, seconds: int) -> None:
    """The leader Lease as another replica holds it (``by``), or released (``""``), written as admin."""
    now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": CONTROLLER_NAMESPACE},
        "spec": {"holderIdentity": by, "leaseDurationSeconds": seconds, "renewTime": now, "acquireTime": now},
    }
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=test", "-f", "-", input=json.dumps(lease)
    )


def test_the_leading_operator_rolls_back_on_an_alarm_event_at_once(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    aws.configure(alarm_evaluation=False)
    seed_alias(aws, FUNCTION)
    cw = aws.client("cloudwatch")
    put_hand_alarm(cw, ALARM)
    set_alarm(cw, ALARM, "OK")
    push = ["--alarm-events=auto", "--alarm-events-wait=1"]
    with operator(kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path, interval=30, extra_args=push) as op:
        apply_rollout(control_plane, watched_canary(namespace))
        eventually(lambda: alias_routing(aws, FUNCTION, "live") == ("1", {"2": 0.1}), timeout=40, what="10%")
        eventually(lambda: any(c.operation == "ReceiveMessage" for c in aws.calls()), timeout=30, what="consuming")
        set_alarm(cw, ALARM, "ALARM")
        began = time.monotonic()
        eventually(lambda: alias_routing(aws, FUNCTION, "live") == ("1", {}), timeout=10, what="rolled back")
        took = time.monotonic() - began
        assert op.metric('lambda_rollouts_alarm_events_up{mode="auto"}') == 1.0, op.tail()
    print(f"\noperator: SetAlarmState -> alias restored {took * 1000:.0f} ms (30 s tick)")
    assert took < AT_ONCE


def test_a_standby_operator_never_consumes_and_takes_the_waiting_events_once_it_leads(
    control_plane: ControlPlane, controller_kubeconfig: Path, aws: Emulator, namespace: str, tmp_path: Path
) -> None:
    aws.configure(alarm_evaluation=False)
    seed_alias(aws, FUNCTION)
    cw = aws.client("cloudwatch")
    put_hand_alarm(cw, ALARM)
    set_alarm(cw, ALARM, "OK")
    url = platform_queue(aws)
    sqs = aws.client("sqs")

    def depth() -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def consumed() -> list[str]:
        operations = ("ReceiveMessage", "DeleteMessageBatch")
        return [c.operation for c in aws.calls() if c.operation in operations and c.params.get("QueueUrl") == url]

    hold_lease(control_plane, by="op-elsewhere", seconds=3600)  # another replica leads
    push = [f"--alarm-events={url}", "--alarm-events-wait=1"]
    with operator(
        kubeconfig=controller_kubeconfig, aws=aws, directory=tmp_path, identity="op-b", extra_args=push
    ) as op:
        apply_rollout(control_plane, watched_canary(namespace))
        eventually(lambda: op.metric("lambda_rollouts_leader") == 0.0, what="op-b to stand by")
        set_alarm(cw, ALARM, "ALARM")
        set_alarm(cw, ALARM, "OK")
        eventually(lambda: depth() == 2, timeout=10, what="both events queued")
        # Election rounds and two long polls' worth of time: a standby that consumed would have.
        time.sleep(2.5)
        assert consumed() == []
        assert depth() == 2
        assert alias_routing(aws, FUNCTION, "live") == ("1", {})  # nor did it reconcile
        assert holder(control_plane) == "op-elsewhere"

        hold_lease(control_plane, by="", seconds=1)  # the other replica let go: op-b leads
        eventually(lambda: holder(control_plane) == "op-b", what="op-b to lead")
        eventually(lambda: depth() == 0, timeout=20, what="the waiting events consumed")
        assert "ReceiveMessage" in consumed() and "DeleteMessageBatch" in consumed()
        # Both changes came before the canary had traffic: they do not roll it back.
        eventually(lambda: alias_routing(aws, FUNCTION, "live") == ("1", {"2": 0.1}), what="10%")
        time.sleep(1.0)
        assert alias_routing(aws, FUNCTION, "live") == ("1", {"2": 0.1}), op.tail()
