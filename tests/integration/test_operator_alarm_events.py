"""``operator --alarm-events auto``: the leader consumes the alarm events and rolls back at once, whatever the tick.

kopf in-process against the emulated apiserver, AWS from the strict emulator (its SetAlarmState is
the transition, its EventBridge rule delivers the event to the queue). The operator ticks every 30 s:
a rollback within a second can only come from the event.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from controller.emulator import Emulator
from tests.integration.helpers import alias_routing, canary, put_hand_alarm, rollout_document, seed_alias, set_alarm
from tests.integration.kube_harness import eventually, kube_cluster, operator_running


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
