"""Concurrency and async invocation through the Engine, against the strict emulator.

Provisioned concurrency is READY before the first weight (timed from the emulator's call log, which
keeps the provisioned-concurrency responses), a warm-up that never finishes degrades the rollout
without moving traffic or leaking a config, reserved concurrency and async config converge and a
hand-made change is set back on the next check, and a role mismatch is refused before any write even
with all of these declared. The engine runs on a fake clock; only the emulator's allocation delay
is real (a fraction of a second).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.core.reasons import Reason
from controller.core.types import Phase, Verb
from controller.emulator import Emulator
from tests.integration.helpers import (
    WRITE_OPERATIONS,
    EngineHarness,
    alias_routing,
    alias_writes,
    canary,
    phase_is,
    rollout_document,
    seed_alias,
    send_request,
    write_document,
)

DLQ = "arn:aws:sqs:us-east-1:123456789012:warm-dlq"
DONE = "arn:aws:sqs:us-east-1:123456789012:warm-done"
WRITES = WRITE_OPERATIONS | {
    "DeleteProvisionedConcurrencyConfig",
    "DeleteFunctionConcurrency",
    "PutFunctionEventInvokeConfig",
    "UpdateFunctionEventInvokeConfig",
}


def document(version: str, strategy: dict[str, Any], **spec: Any) -> dict[str, Any]:
    doc = rollout_document("warm", function="warm", version=version, strategy=strategy)
    doc["spec"].update(spec)
    return doc


def seeded(aws: Emulator, versions: int = 2) -> None:
    seed_alias(aws, "warm", versions=versions)
    aws.clear_calls()  # the log then holds only what the controller did


def provisioned(aws: Emulator) -> dict[str, int]:
    configs = aws.client("lambda").list_provisioned_concurrency_configs(FunctionName="warm")
    return {
        c["FunctionArn"].rsplit(":", 1)[1]: c["RequestedProvisionedConcurrentExecutions"]
        for c in configs["ProvisionedConcurrencyConfigs"]
    }


def first_ready_read(aws: Emulator, qualifier: str) -> float:
    """When a provisioned-concurrency read first answered READY for ``qualifier`` (call-log time)."""
    for call in aws.calls():
        if call.operation == "ListProvisionedConcurrencyConfigs":
            for config in call.result.get("ProvisionedConcurrencyConfigs", []):
                if config["FunctionArn"].endswith(f":{qualifier}") and config["Status"] == "READY":
                    return call.timestamp
    raise AssertionError(f"no read saw {qualifier} READY")


def test_provisioned_concurrency_is_ready_before_the_first_weight(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seeded(aws)
    write_document(docs, document("2", canary(50, None), concurrency={"provisioned": 2, "warmupTimeout": "10m"}))
    harness.reload()
    warming = []

    def shifted() -> bool:
        status = harness.engine.status("default/warm")
        if status is not None and status.reason == Reason.WARMING:
            warming.append(status)
        return alias_routing(aws, "warm", "live") == ("1", {"2": 0.5})

    harness.drive(shifted, step=1.0, max_ticks=400)

    # The status showed the warm-up with its progress while it lasted.
    assert warming and warming[0].warmup is not None
    assert (warming[0].warmup.version, warming[0].warmup.requested) == ("2", 2)
    assert "allocated" in warming[0].message
    # The weight write came after a read saw the new version READY, and after the allocation time.
    puts = [c for c in aws.calls() if c.operation == "PutProvisionedConcurrencyConfig" and c.status < 300]
    put_new = next(c for c in puts if c.params.get("Qualifier") == "2")
    weight_write = alias_writes(aws, "warm", "live")[0]  # the 50% write: the first alias write there is
    assert weight_write.timestamp >= first_ready_read(aws, "2") >= put_new.timestamp
    assert weight_write.timestamp - put_new.timestamp >= 0.3  # the emulator's allocation delay
    # Provisioned concurrency lives on versions, never on the weighted alias.
    assert all(c.params.get("Qualifier", "").isdigit() for c in puts)

    # Promotion: the new version keeps the declared value, the old one's config is released.
    send_request(aws, "warm", "live", Verb.PROMOTE)
    harness.drive(lambda: alias_routing(aws, "warm", "live") == ("2", {}), step=1.0)
    harness.drive(phase_is(harness, "warm", Phase.HEALTHY), step=1.0)
    harness.tick(1.0)
    assert provisioned(aws) == {"2": 2}


def test_warm_up_timeout_degrades_moves_no_traffic_and_leaks_nothing(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seeded(aws)
    aws.configure(provisioned_concurrency_delay=3600.0)  # never READY within the test
    write_document(docs, document("2", canary(10, 5), concurrency={"provisioned": 3, "warmupTimeout": "30s"}))
    harness.reload()
    harness.drive(phase_is(harness, "warm", Phase.DEGRADED), step=5.0)

    status = harness.status("warm")
    assert status.reason == Reason.WARMUP_TIMEOUT
    assert "not warm after 30s" in status.message
    assert alias_writes(aws, "warm", "live") == []  # no traffic moved, not even briefly
    assert alias_routing(aws, "warm", "live") == ("1", {})
    assert "2" not in provisioned(aws)  # the canary's config was released
    # Not retried by itself.
    for _ in range(3):
        harness.tick(60.0)
    assert harness.status("warm").phase is Phase.DEGRADED
    assert "2" not in provisioned(aws)


def test_reserved_and_async_converge_and_a_manual_change_is_set_back(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seeded(aws)
    lam = aws.client("lambda")
    async_invoke = {"maximumRetryAttempts": 1, "maximumEventAgeSeconds": 3600, "onSuccess": DONE, "onFailure": DLQ}
    write_document(docs, document("1", canary(10, 5), concurrency={"reserved": 20}, asyncInvoke=async_invoke))
    harness.reload()

    def as_declared() -> bool:
        reserved = lam.get_function_concurrency(FunctionName="warm").get("ReservedConcurrentExecutions")
        try:
            config = lam.get_function_event_invoke_config(FunctionName="warm", Qualifier="live")
        except lam.exceptions.ResourceNotFoundException:
            return False
        return (
            reserved == 20
            and config.get("MaximumRetryAttempts") == 1
            and config.get("MaximumEventAgeInSeconds") == 3600
            and config["DestinationConfig"]["OnFailure"].get("Destination") == DLQ
            and config["DestinationConfig"]["OnSuccess"].get("Destination") == DONE
        )

    harness.drive(as_declared, step=1.0, max_ticks=5)
    harness.tick(5.0)
    aws.clear_calls()
    harness.tick(5.0)
    # Settled: a quiet tick neither reads nor writes them.
    assert not [c for c in aws.calls() if "Concurrency" in c.operation or "EventInvoke" in c.operation]

    lam.put_function_concurrency(FunctionName="warm", ReservedConcurrentExecutions=500)
    lam.put_function_event_invoke_config(FunctionName="warm", Qualifier="live", MaximumRetryAttempts=2)
    assert not as_declared()
    aws.clear_calls()
    # The next check (the slow drift check, here after its interval) sets both back.
    harness.tick(harness.engine.settings.drift_interval + 1)
    assert as_declared()
    writes = [c.operation for c in aws.calls() if c.operation in WRITES]
    assert writes == ["PutFunctionConcurrency", "PutFunctionEventInvokeConfig"]


def test_role_mismatch_is_refused_before_any_write_with_concurrency_declared(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seeded(aws, versions=1)
    lam = aws.client("lambda")
    lam.update_function_configuration(FunctionName="warm", Role=aws.ensure_role("another-role"))
    aws.wait_for(lambda: lam.get_function_configuration(FunctionName="warm")["LastUpdateStatus"] == "Successful")
    assert lam.publish_version(FunctionName="warm")["Version"] == "2"
    aws.clear_calls()
    write_document(
        docs,
        document(
            "2",
            canary(10, 5),
            concurrency={"reserved": 20, "provisioned": 2},
            asyncInvoke={"maximumRetryAttempts": 0, "onFailure": DLQ},
        ),
    )
    harness.reload()
    for _ in range(3):
        harness.tick(70.0)
    status = harness.status("warm")
    assert status.phase is Phase.INVALID and status.reason == Reason.INCOMPATIBLE_VERSIONS
    assert [c.operation for c in aws.calls() if c.operation in WRITES] == []
    assert provisioned(aws) == {}
