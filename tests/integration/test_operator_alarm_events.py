"""``operator --alarm-events auto``: the leader consumes the alarm events and rolls back at once, whatever the tick.

kopf in-process against the emulated apiserver, AWS from the strict emulator (its SetAlarmState is
the transition, its EventBridge rule delivers the event to the queue). The operator ticks every 30 s:
a rollback within a second can only come from the event. A replica that does not lead never
receives a message: SQS keeps them for the one that will.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from pathlib import Path

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
from tests.integration.kube_harness import LEASES, KubeCluster, eventually, kube_cluster, operator_running


def test_the_leading_operator_rolls_back_on_an_alarm_event_at_once(aws: Emulator, tmp_path: Path) -> None:
    aws.configure(alarm_evaluation=False)
    seed_alias(aws, "orders")
    cw = aws.client("cloudwatch")
    put_hand_alarm(cw, "orders-errors")
    set_alarm(cw, "orders-errors", "OK")
    took: list[float] = []

    async def scenario() -> None:
        push = ["--alarm-events=auto", "--alarm-events-wait=1"]
        async with kube_cluster(tmp_path) as cluster, operator_running(cluster, aws.url, interval=30, extra_args=push):
            doc = rollout_document(
                "orders", function="orders", version="2", strategy=canary(10, None), alarms=["orders-errors"]
            )
            await cluster.apply(doc)
            await eventually(lambda: alias_routing(aws, "orders", "live") == ("1", {"2": 0.1}), timeout=30)
            await eventually(lambda: any(c.operation == "ReceiveMessage" for c in aws.calls()), timeout=30)
            await asyncio.to_thread(set_alarm, cw, "orders-errors", "ALARM")
            began = time.monotonic()
            await eventually(lambda: alias_routing(aws, "orders", "live") == ("1", {}), timeout=10)
            took.append(time.monotonic() - began)

    asyncio.run(scenario())
    print(f"\noperator: SetAlarmState -> alias restored {took[0] * 1000:.0f} ms (30 s tick)")
    assert took[0] < 1.0


async def put_lease(cluster: KubeCluster, *, holder: str, seconds: int) -> None:
    """The leader Lease as another replica holds it (``holder``), or released (``""``), through the API."""
    import aiohttp

    path = f"{cluster.url}/apis/coordination.k8s.io/v1/namespaces/default/leases"
    now = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    spec = {"holderIdentity": holder, "leaseDurationSeconds": seconds, "renewTime": now, "acquireTime": now}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{path}/lambda-rollouts-leader") as response:
            current = await response.json() if response.status == 200 else None
        if current is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "lambda-rollouts-leader"},
            }
            async with session.post(path, json={**body, "spec": spec}) as response:
                assert response.status < 300, await response.text()
        else:
            async with session.put(f"{path}/lambda-rollouts-leader", json={**current, "spec": spec}) as response:
                assert response.status < 300, await response.text()


def test_a_standby_operator_never_consumes_and_takes_the_waiting_events_once_it_leads(
    aws: Emulator, tmp_path: Path
) -> None:
    aws.configure(alarm_evaluation=False)
    seed_alias(aws, "orders")
    cw = aws.client("cloudwatch")
    put_hand_alarm(cw, "orders-errors")
    set_alarm(cw, "orders-errors", "OK")
    url = platform_queue(aws)
    sqs = aws.client("sqs")

    def depth() -> int:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def consumed() -> list[str]:
        """Who took from this queue (a long poll of another test's operator may still end after the reset)."""
        operations = ("ReceiveMessage", "DeleteMessageBatch")
        return [c.operation for c in aws.calls() if c.operation in operations and c.params.get("QueueUrl") == url]

    async def scenario() -> None:
        push = [f"--alarm-events={url}", "--alarm-events-wait=1"]
        async with kube_cluster(tmp_path) as cluster:
            await put_lease(cluster, holder="op-elsewhere", seconds=3600)  # another replica leads
            async with operator_running(cluster, aws.url, identity="op-b", extra_args=push):
                doc = rollout_document(
                    "orders", function="orders", version="2", strategy=canary(10, None), alarms=["orders-errors"]
                )
                await cluster.apply(doc)

                def lease_reads() -> int:
                    return sum(
                        1 for r in cluster.emulator.received() if r.resource == LEASES and r.method.value == "GET"
                    )

                await eventually(lambda: lease_reads() >= 3, timeout=20, what="op-b to stand by")
                await asyncio.to_thread(set_alarm, cw, "orders-errors", "ALARM")
                await asyncio.to_thread(set_alarm, cw, "orders-errors", "OK")
                await eventually(lambda: depth() == 2, timeout=10, what="both events queued")
                # Some election rounds and two long polls' worth of time: a standby that consumed would have.
                await asyncio.sleep(2.5)
                assert consumed() == []
                assert depth() == 2
                assert alias_routing(aws, "orders", "live") == ("1", {})  # nor did it reconcile

                await put_lease(cluster, holder="", seconds=1)  # the other replica let go: op-b leads
                await eventually(lambda: depth() == 0, timeout=20, what="the waiting events consumed")
                assert "ReceiveMessage" in consumed() and "DeleteMessageBatch" in consumed()
                # Both changes came before the canary had traffic: they do not roll it back.
                await eventually(lambda: alias_routing(aws, "orders", "live") == ("1", {"2": 0.1}), timeout=10)
                await asyncio.sleep(1.0)
                assert alias_routing(aws, "orders", "live") == ("1", {"2": 0.1})

    asyncio.run(scenario())
