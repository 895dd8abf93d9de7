"""Lifecycle hooks and driftPolicy Revert, end to end against the strict emulator.

Hook functions are real Lambda functions in the emulator. Without Docker its Invoke echoes the
payload (no ``status`` field: the hook passes); a function made to fail on purpose sets
``EMULATOR_FUNCTION_ERROR`` or ``EMULATOR_INVOKE_RESPONSE`` in its environment (docs/emulator.md).
URL hooks go to a small aiohttp server on 127.0.0.1 that runs on the harness's event loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.core.types import Phase
from controller.emulator import Emulator
from controller.emulator.server import zip_code
from tests.integration.helpers import (
    EngineHarness,
    alias_routing,
    canary,
    phase_is,
    rollout_document,
    seed_alias,
    write_document,
)


def hook_function(emulator: Emulator, name: str, **env: str) -> None:
    emulator.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=emulator.ensure_role(),
        Handler="lambda_function.handler",
        Code={"ZipFile": zip_code("def handler(event, context):\n    return event\n")},
        Environment={"Variables": env},
    )


def start(aws: Emulator, docs: Path, harness: EngineHarness, *, strategy: dict[str, Any], **spec: Any) -> None:
    seed_alias(aws, "pay")
    document = rollout_document("pay", function="pay", version="2", strategy=strategy)
    document["spec"].update(spec)
    write_document(docs, document)
    harness.reload()


def operations(emulator: Emulator) -> list[str]:
    return [c.operation for c in emulator.calls() if c.status < 300]


def test_before_hook_passes_before_any_traffic(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    hook_function(aws, "pay-pretraffic")
    start(
        aws,
        docs,
        harness,
        strategy=canary(20, 10),
        hooks={"beforeAllowTraffic": {"function": "pay-pretraffic", "timeout": "5s"}},
    )
    harness.drive(phase_is(harness, "pay", Phase.HEALTHY), step=5.0)

    assert alias_routing(aws, "pay", "live") == ("2", {})
    ops = operations(aws)
    invokes = [i for i, op in enumerate(ops) if op == "Invoke"]
    updates = [i for i, op in enumerate(ops) if op == "UpdateAlias"]
    assert len(invokes) == 1, ops
    assert invokes[0] < updates[0]


def test_failing_before_hook_rolls_back_without_traffic_and_is_not_retried(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    hook_function(aws, "pay-pretraffic", EMULATOR_FUNCTION_ERROR="Unhandled")
    start(aws, docs, harness, strategy=canary(20, 10), hooks={"beforeAllowTraffic": {"function": "pay-pretraffic"}})
    harness.drive(phase_is(harness, "pay", Phase.ROLLED_BACK))

    status = harness.status("pay")
    assert status.reason == "HookFailed"
    assert "beforeAllowTraffic" in status.message and "Unhandled" in status.message
    assert "UpdateAlias" not in operations(aws)  # the new version never got traffic
    assert alias_routing(aws, "pay", "live") == ("1", {})
    for _ in range(5):
        harness.tick(30.0)
    assert operations(aws).count("Invoke") == 1
    assert harness.status("pay").phase is Phase.ROLLED_BACK


def test_failing_after_hook_rolls_back_from_full_traffic(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    hook_function(aws, "pay-pretraffic")
    answer = json.dumps({"status": "Failed", "reason": "smoke test: checkout broken"})
    hook_function(aws, "pay-posttraffic", EMULATOR_INVOKE_RESPONSE=answer)
    harness.watch = ("pay", "live")
    start(
        aws,
        docs,
        harness,
        strategy={"allAtOnce": {}},
        hooks={
            "beforeAllowTraffic": {"function": "pay-pretraffic"},
            "afterAllowTraffic": {"function": "pay-posttraffic"},
        },
    )
    harness.drive(phase_is(harness, "pay", Phase.ROLLED_BACK, Phase.HEALTHY))

    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.ROLLED_BACK, "HookFailed")
    assert "afterAllowTraffic" in status.message and "checkout broken" in status.message
    assert ("2", {}) in harness.seen  # it had all the traffic before the hook said no
    assert alias_routing(aws, "pay", "live") == ("1", {})
    assert status.history[-1].outcome == "RolledBack"


class HookServer:
    """A local webhook: answers with ``status`` and keeps every payload it was sent."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(status=self.answers.get(request.path, 200), text="checked")

    async def start(self) -> AsyncIterator[None]:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        yield
        await runner.cleanup()


def test_url_hooks_get_the_rollout_and_a_5xx_fails(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    server = HookServer()
    server.answers["/post"] = 503
    lifetime = server.start()
    harness.run(anext(lifetime))
    try:
        start(
            aws,
            docs,
            harness,
            strategy=canary(50, 5),
            hooks={
                "beforeAllowTraffic": {"url": f"{server.url}/pre", "timeout": "2s"},
                "afterAllowTraffic": {"url": f"{server.url}/post", "timeout": "2s"},
            },
        )
        harness.drive(phase_is(harness, "pay", Phase.ROLLED_BACK, Phase.HEALTHY), step=2.0)
    finally:
        harness.run(anext(lifetime, None))

    status = harness.status("pay")
    assert (status.phase, status.reason) == (Phase.ROLLED_BACK, "HookFailed")
    assert "HTTP 503" in status.message
    assert [p["hook"] for p in server.received] == ["beforeAllowTraffic", "afterAllowTraffic"]
    first = server.received[0]
    assert first["functionName"] == "pay" and first["alias"] == "live"
    assert (first["stableVersion"], first["newVersion"]) == ("1", "2")
    assert first["rollout"] == {"namespace": "default", "name": "pay"}


def test_unreachable_url_hook_fails_with_the_reason(aws: Emulator, docs: Path, harness: EngineHarness) -> None:
    start(
        aws,
        docs,
        harness,
        strategy=canary(50, 5),
        hooks={"beforeAllowTraffic": {"url": "http://127.0.0.1:9/pre", "timeout": "1s"}},
    )
    harness.drive(phase_is(harness, "pay", Phase.ROLLED_BACK))
    assert "http://127.0.0.1:9/pre" in harness.status("pay").message
    assert "UpdateAlias" not in operations(aws)


@pytest.mark.parametrize("policy", ["Hold", "Revert"])
def test_drift_policy_on_a_hand_moved_alias(aws: Emulator, docs: Path, harness: EngineHarness, policy: str) -> None:
    start(aws, docs, harness, strategy=canary(20, 3600), driftPolicy=policy)
    harness.drive(lambda: alias_routing(aws, "pay", "live") == ("1", {"2": 0.2}))

    lam = aws.client("lambda")
    lam.update_alias(
        FunctionName="pay", Name="live", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}}
    )
    harness.tick(harness.engine.settings.drift_interval + 1)
    harness.tick(1.0)

    status = harness.status("pay")
    drift_events = [e for e in harness.sink.events["default/pay"] if e.reason == "AliasDrift"]
    assert len(drift_events) == 1 and drift_events[0].warning
    if policy == "Hold":
        assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.5})
        assert (status.phase, status.reason) == (Phase.PAUSED, "AliasDrift")
        return
    assert alias_routing(aws, "pay", "live") == ("1", {"2": 0.2})
    assert status.phase is Phase.PROGRESSING
    assert "reverted" in drift_events[0].message
    # Once per occurrence: nothing more is written until someone moves it again.
    writes = sum(1 for c in aws.calls() if c.operation == "UpdateAlias")
    harness.tick(harness.engine.settings.drift_interval + 1)
    assert sum(1 for c in aws.calls() if c.operation == "UpdateAlias") == writes
