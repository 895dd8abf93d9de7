"""Nothing a rollout waits for delays its rollback: a pending hook, a slow AWS call, a retry backoff, a
measurement in flight. An alarm, ``abort`` or the progress deadline acts within one tick regardless.

The engine is stepped as the daemon steps it (``EngineHarness.step``: the tick waits for the
reconciles it started, not for hooks or measurements still running). Slow and failing AWS calls come
from the emulator's fault proxy, hooks that never answer from a local HTTP server that never replies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    canary,
    put_hand_alarm,
    rollout_document,
    seed_alias,
    send_request,
    set_alarm,
    write_document,
)


class SilentHook:
    """A webhook that accepts the request and never answers (until the test ends)."""

    def __init__(self) -> None:
        self.url = ""
        self.calls = 0
        self._release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await self._release.wait()
        return web.Response(text="too late")

    async def serve(self) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        yield
        self._release.set()
        await runner.cleanup()


def start(docs: Path, harness: EngineHarness, *, strategy: dict[str, Any], **spec: Any) -> None:
    document = rollout_document("pay", function="pay", version="2", strategy=strategy, alarms=["pay-errors"])
    document["spec"].update(spec)
    write_document(docs, document)
    harness.reload()


@pytest.fixture
def silent_hook(harness: EngineHarness) -> Iterator[SilentHook]:
    hook = SilentHook()
    lifetime = hook.serve()
    harness.run(anext(lifetime))
    yield hook
    harness.run(anext(lifetime, None))


def at_full_traffic_waiting_for_the_hook(
    aws: Emulator, docs: Path, harness: EngineHarness, url: str, **spec: Any
) -> None:
    """All traffic on version 2, its afterAllowTraffic hook asked for and never answering."""
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    hooks = {"afterAllowTraffic": {"url": f"{url}/post", "timeout": "60s"}}
    start(docs, harness, strategy={"allAtOnce": {}}, hooks=hooks, **spec)
    for _ in range(4):
        harness.step(1.0)
    assert alias_routing(aws, "pay", "live") == ("2", {})
    assert harness.status("pay").reason == "RunningHook"


@pytest.mark.parametrize("trigger", ["alarm", "abort", "deadline"])
def test_a_hook_that_never_answers_holds_back_no_rollback(
    aws: Emulator, docs: Path, harness: EngineHarness, silent_hook: SilentHook, trigger: str
) -> None:
    spec = {"progressDeadline": "4s"} if trigger == "deadline" else {}
    at_full_traffic_waiting_for_the_hook(aws, docs, harness, silent_hook.url, **spec)
    if trigger == "alarm":
        set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
    elif trigger == "abort":
        send_request(aws, "pay", "live", Verb.ABORT)
    began = time.monotonic()
    harness.step(5.0)  # one tick later (the deadline: 4 s after the final write)
    assert alias_routing(aws, "pay", "live") == ("1", {})
    assert time.monotonic() - began < 5.0  # not the hook's 60 s timeout
    status = harness.status("pay")
    expected = {"alarm": "AlarmFired", "abort": "Aborted", "deadline": "ProgressDeadlineExceeded"}[trigger]
    assert (status.phase in (Phase.ROLLED_BACK, Phase.DEGRADED), status.reason) == (True, expected)
    assert silent_hook.calls == 1  # asked once, never again while it was running


def test_a_late_hook_answer_is_ignored_and_recorded(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    server = SilentHook()
    lifetime = server.serve()
    harness.run(anext(lifetime))
    at_full_traffic_waiting_for_the_hook(aws, docs, harness, server.url)
    set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
    harness.step(5.0)
    assert harness.status("pay").reason == "AlarmFired"
    server._release.set()  # the hook answers 200 at last
    harness.tick(1.0)  # waits for the hook's answer...
    harness.tick(1.0)  # ... which this reconcile is handed
    harness.run(anext(lifetime, None))
    events = [e for e in harness.sink.events["default/pay"] if e.reason == "HookAnswerIgnored"]
    assert len(events) == 1 and "Successful" in events[0].message and events[0].warning
    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.ROLLED_BACK, "AlarmFired")
    assert alias_routing(aws, "pay", "live") == ("1", {})


@pytest.fixture
def proxy(aws: Emulator) -> Iterator[FaultProxy]:
    proxy = FaultProxy.start(aws.url)
    yield proxy
    proxy.stop()


def test_a_slow_alias_write_is_overtaken_by_the_rollback(
    aws: Emulator, docs: Path, proxy: FaultProxy, tmp_path: Path
) -> None:
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    with EngineHarness(aws, docs, endpoint=proxy.url) as harness:
        start(docs, harness, strategy=canary(10, 60, 50, 60))
        harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.1}))
        # The 50% write will hang for 3 s in the network; meanwhile the alarm fires.
        proxy.set_rules([FaultRule(action="latency", service="lambda", operation="UpdateAlias", latency=3.0, count=1)])

        async def slow_step_then_alarm() -> float:
            harness.clock.advance(61.0)
            await harness.engine.step()
            await asyncio.sleep(0.3)  # the reconcile is now waiting on its UpdateAlias
            set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
            began = time.monotonic()
            harness.clock.advance(5.0)
            started = await harness.engine.step()
            await asyncio.wait(started)
            return time.monotonic() - began

        reaction = harness.run(slow_step_then_alarm())
        assert reaction < 2.5  # well before the hung write came back
        assert alias_routing(aws, "pay", "live") == ("1", {})
        assert harness.status("pay").reason == "AlarmFired"
        time.sleep(3.0)  # the hung 50% write lands now, with a RevisionId that is stale: refused
        assert alias_routing(aws, "pay", "live") == ("1", {})


def test_a_rollout_backing_off_after_failures_rolls_back_at_once(aws: Emulator, docs: Path, proxy: FaultProxy) -> None:
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    with EngineHarness(aws, docs, endpoint=proxy.url, max_attempts=1) as harness:
        start(docs, harness, strategy=canary(10, 60, 50, 60))
        harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.1}))
        # 500s: a transient fault, so the backoff starts from 1 s and doubles; five in a row make it long.
        proxy.set_rules([FaultRule(action="error", service="lambda", operation="UpdateAlias", count=5)])
        harness.step(61.0)
        for _ in range(4):
            harness.step(harness.engine.rollouts()["default/pay"].retry_at - harness.clock() + 0.1)
        rollout = harness.engine.rollouts()["default/pay"]
        assert rollout.failures == 5 and rollout.retry_at - harness.clock() > 10  # backing off for a while
        set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
        harness.step(1.0)  # one tick: long before the backoff ends
        assert alias_routing(aws, "pay", "live") == ("1", {})
        assert harness.status("pay").reason == "AlarmFired"


def test_a_slow_metric_measurement_holds_back_no_alarm(aws: Emulator, docs: Path, proxy: FaultProxy) -> None:
    seed_alias(aws, "pay")
    put_hand_alarm(aws.client("cloudwatch"), "pay-errors")
    metric = {
        "name": "errors",
        "queries": [{"id": "errors", "metricName": "Errors", "stat": "Sum"}],
        "expression": "errors",
        "threshold": {"max": 5},
        "period": "60s",
        "interval": "1s",
    }
    with EngineHarness(aws, docs, endpoint=proxy.url, measure_wait=0.2) as harness:
        proxy.set_rules([FaultRule(action="latency", service="cloudwatch", operation="GetMetricData", latency=4.0)])
        start(docs, harness, strategy=canary(10, 600), analysis={"alarms": ["pay-errors"], "metrics": [metric]})
        harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.1}), max_ticks=20)
        set_alarm(aws.client("cloudwatch"), "pay-errors", "ALARM")
        began = time.monotonic()
        harness.step(1.0)
        assert time.monotonic() - began < 2.0  # the tick did not wait for the 4 s GetMetricData
        assert alias_routing(aws, "pay", "live") == ("1", {})
        assert harness.status("pay").reason == "AlarmFired"
