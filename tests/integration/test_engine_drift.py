"""A reverted drift leaves a trace: in the durable record, the status, the log and the metrics.

With ``driftPolicy: Revert``, an alias moved by hand mid-canary is written back (against the strict
emulator over HTTP, on a fake clock); what that leaves behind is checked where people look: the
record on the function (a ``DriftReverted`` history entry saying what the alias was and what it was
set back to, and when), the status reason for the rest of the step, one WARNING log line, and
``lambda_rollouts_drift_reverted_total``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.core.codec import decode_record
from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.emulator import Emulator
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.sink import LogSink, MetricsSink
from controller.sources.files import FileSource
from tests.integration.helpers import (
    FakeClock,
    MemorySink,
    alias_routing,
    canary,
    function_tags,
    rollout_document,
    seed_alias,
    write_document,
)


async def test_a_reverted_drift_is_recorded_logged_and_counted(
    aws: Emulator, docs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seed_alias(aws, "orders", versions=2)
    document = rollout_document("orders", function="orders", version="2", strategy=canary(20, 600))
    document["spec"]["driftPolicy"] = "Revert"
    write_document(docs, document)
    clock = FakeClock(1_800_000_000.0)
    metrics, sink = Metrics(), MemorySink()
    clients = make_clients(
        AwsSettings(endpoint_url=aws.url, region="us-east-1"), budget=Budget(dict.fromkeys(DEFAULT_RATES, 10_000.0))
    )
    engine = Engine(
        clients,
        settings=EngineSettings(drift_interval=30.0),
        clock=clock,
        sinks=(sink, MetricsSink(metrics, clock=clock), LogSink()),
        rand=lambda: 0.5,
    )
    await engine.apply(FileSource(docs).scan())
    for _ in range(3):
        await engine.tick()
    assert alias_routing(aws, "orders", "live") == ("1", {"2": 0.2})

    # Someone moves the alias by hand; the next drift check sees it and writes the canary's state back.
    aws.client("lambda").update_alias(
        FunctionName="orders", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}}
    )
    caplog.set_level(logging.WARNING)
    reverted_at = None
    for _ in range(10):
        clock.advance(31)
        await engine.tick()
        if alias_routing(aws, "orders", "live") == ("1", {"2": 0.2}) and reverted_at is None:
            reverted_at = clock.now
            break
    assert reverted_at is not None
    await engine.tick()  # the revert confirmed

    record = decode_record("live", function_tags(aws, "orders"))
    assert record is not None
    (entry,) = [h for h in record.history if h.outcome == "DriftReverted"]
    assert entry.reason == Reason.DRIFT_REVERTED and entry.at == reverted_at and entry.version == "2"
    assert entry.detail == "alias live was version 1 at 50% + 2 at 50%; set back to version 1 at 80% + 2 at 20%"
    status = engine.status("default/orders")
    assert status is not None and (status.phase, status.reason) == (Phase.PROGRESSING, Reason.DRIFT_REVERTED)
    assert status.history[-1] == entry
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if w.startswith("DriftReverted: ")] == [
        "DriftReverted: alias live was changed outside the controller: it was version 1 at 50% + 2 at 50%, "
        "expected version 1 at 80% + 2 at 20%; reverted (driftPolicy Revert)"
    ]
    counted = metrics.registry.get_sample_value(
        "lambda_rollouts_drift_reverted_total",
        {"namespace": "default", "name": "orders", "function": "orders", "alias": "live"},
    )
    assert counted == 1
    # The next ticks keep the reason; nothing more is written.
    writes = len([c for c in aws.calls() if c.operation == "UpdateAlias"])
    clock.advance(5)
    await engine.tick()
    assert len([c for c in aws.calls() if c.operation == "UpdateAlias"]) == writes
    status = engine.status("default/orders")
    assert status is not None and status.reason == Reason.DRIFT_REVERTED
