"""Cold start: what a first shift costs in AWS calls, in which order they go, and what stays guaranteed.

Everything is read from the strict emulator's call log: the calls a first shift of N new rollouts
makes (bulk reads, no per-version configuration reads from the control plane), the order in which
the budget serves them (a pipeline per rollout: the first alias is written before the last one is
read), and the write-ahead guarantees (the record naming the pending write is persisted before each
alias write, the alias is re-read right before it and the write carries that read's RevisionId).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from controller.aws import AwsSettings, Budget, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.core.codec import decode_record
from controller.core.types import AliasWrite, Phase, Verb
from controller.document.model import RolloutSpec
from controller.emulator import CallRecord, Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.sink import AliasWritten
from controller.sources.files import FileSource
from tests.integration.helpers import (
    EngineHarness,
    MemorySink,
    alias_routing,
    canary,
    paused_rollout_document,
    phase_is,
    put_errors_alarm,
    rollout_document,
    seed_alias,
    send_request,
    write_document,
    written_weights,
)


def _tag_writes(aws: Emulator, function: str) -> list[dict[str, str]]:
    return [
        dict(c.params.get("Tags") or {})
        for c in aws.calls()
        if c.operation == "TagResource" and str(c.params.get("Resource", "")).endswith(f":function:{function}")
    ]


def test_a_first_weight_and_the_pause_it_begins_go_in_one_confirming_record(
    aws: Emulator, docs: Path, harness: EngineHarness
) -> None:
    seed_alias(aws, "fn-one")
    write_document(docs, rollout_document("fn-one", function="fn-one", version="2", strategy=canary(10, None)))
    harness.reload()

    harness.tick(1.0)

    # The tick that wrote the weight also recorded the pause it begins: no record write of its own later.
    assert harness.status("fn-one").phase is Phase.PAUSED
    assert len(_tag_writes(aws, "fn-one")) == 2  # write-ahead, then confirmed (and paused)
    aws.clear_calls()
    harness.tick(5.0)
    assert _tag_writes(aws, "fn-one") == []
    assert harness.status("fn-one").phase is Phase.PAUSED


# ---- a cold start of N rollouts ---------------------------------------------------------------------

ROLLOUTS = 8
# More rollouts than the Lambda budget's burst (10 calls): past it, the budget's order is what is seen.
COLD_START = 16


def _new_rollouts(aws: Emulator, docs: Path, count: int) -> list[str]:
    """``count`` new rollouts ``live`` 1 -> 2, each waiting at 10% for ``promote``, one alarm each."""
    names = [f"cold-{index:02d}" for index in range(count)]
    cw = aws.client("cloudwatch")
    for name in names:
        seed_alias(aws, name)
        put_errors_alarm(cw, f"{name}-errors")
        write_document(docs, paused_rollout_document(name))
    aws.clear_calls()  # the seeding is not the controller's
    return names


def _function_of(call: CallRecord) -> str:
    """The function a Lambda call is about (by name or ARN, qualifier dropped)."""
    named = str(call.params.get("FunctionName") or call.params.get("Resource") or "")
    return named.split(":function:")[-1].split(":")[0]


class _WriteAheadSink(MemorySink):
    """At each alias write, before the reconcile goes on, the record as AWS has it in the tags."""

    def __init__(self, aws: Emulator) -> None:
        super().__init__()
        self._lambda = aws.client("lambda")
        self.ahead: dict[str, list[AliasWrite | None]] = {}

    async def alias_written(self, *, spec: RolloutSpec, write: AliasWritten) -> None:
        await super().alias_written(spec=spec, write=write)
        arn = self._lambda.get_function_configuration(FunctionName=spec.function_name)["FunctionArn"]
        record = decode_record(spec.alias, self._lambda.list_tags(Resource=arn)["Tags"])
        self.ahead.setdefault(spec.function_name, []).append(record.pending if record is not None else None)


def test_a_cold_start_reads_in_bulk_and_moves_the_first_rollout_before_reading_the_last(
    aws: Emulator, docs: Path
) -> None:
    names = _new_rollouts(aws, docs, COLD_START)
    # The default budget, paced for real: the order in which it serves the reconciles is under test.
    clients = make_clients(AwsSettings(endpoint_url=aws.url, region="us-east-1"), budget=Budget(DEFAULT_RATES))
    engine = Engine(clients, settings=EngineSettings(interval=5.0), rand=lambda: 0.5)

    async def cold_start() -> None:
        await engine.apply(FileSource(docs).scan())
        for _ in range(5):
            await engine.tick()
            statuses = [engine.status(f"default/{name}") for name in names]
            if all(s is not None and s.phase is Phase.PAUSED for s in statuses):
                return
        raise AssertionError(f"not all paused: {[engine.status(f'default/{n}') for n in names]}")

    asyncio.run(cold_start())

    calls = aws.calls()
    lambda_ops = Counter(c.operation for c in calls if c.service == "lambda")
    # The alias read right before its write, the write, and the record around it: nothing else from
    # the control plane's 15/s. Configurations come from GetFunction (its own quota), once per
    # function and per version (a published version never changes), never per tick.
    assert lambda_ops["GetAlias"] == COLD_START
    assert lambda_ops["UpdateAlias"] == COLD_START
    assert lambda_ops["TagResource"] == 2 * COLD_START  # write-ahead, then confirmed (and paused)
    assert lambda_ops["GetFunction"] <= 3 * COLD_START  # the function, its two versions
    control_plane = set(lambda_ops) - {"GetFunction"}
    assert control_plane == {"GetAlias", "UpdateAlias", "TagResource"}, lambda_ops
    # The records of every managed function and the control requests: a few pages for all of them.
    tagging = [c for c in calls if c.service == "tagging"]
    assert {c.operation for c in tagging} == {"GetResources"}
    assert len(tagging) <= 4, tagging
    # A pipeline per rollout: the first alias was written before the last one was even read.
    reads = [c.timestamp for c in calls if c.operation == "GetAlias"]
    writes = [c.timestamp for c in calls if c.operation == "UpdateAlias"]
    assert min(writes) < max(reads)


def test_every_alias_write_is_preceded_by_its_record_and_a_fresh_read_whose_revision_it_carries(
    aws: Emulator, docs: Path
) -> None:
    names = _new_rollouts(aws, docs, ROLLOUTS)
    sink = _WriteAheadSink(aws)
    with EngineHarness(aws, docs, sink=sink) as harness:
        harness.drive(lambda: all(phase_is(harness, name, Phase.PAUSED)() for name in names))
        for name in names:
            send_request(aws, name, "live", Verb.PROMOTE)
        harness.drive(
            lambda: all(phase_is(harness, name, Phase.PAUSED)() and _weight(aws, name) == 0.5 for name in names)
        )

    by_function: dict[str, list[CallRecord]] = {}
    for call in aws.calls():
        if call.service == "lambda" and call.operation in ("GetAlias", "TagResource", "UpdateAlias"):
            by_function.setdefault(_function_of(call), []).append(call)
    for name in names:
        # The record AWS held at each write named that write as pending: written ahead of it.
        assert [p is not None and p.alias == "live" for p in sink.ahead[name]] == [True, True], sink.ahead[name]
        calls = by_function[name]
        updates = [i for i, c in enumerate(calls) if c.operation == "UpdateAlias"]
        assert len(updates) == 2
        for index in updates:
            # Right before the write: its record (write-ahead), and before that the alias read again.
            assert [c.operation for c in calls[index - 2 : index]] == ["GetAlias", "TagResource"], calls
            # It carried a RevisionId, and the strict emulator took it: the one the re-read returned.
            assert calls[index].params.get("RevisionId"), calls[index].params
            assert 200 <= calls[index].status < 300


def _weight(aws: Emulator, function: str) -> float:
    _, weights = alias_routing(aws, function, "live")
    return weights.get("2", 0.0)


# ---- under AWS faults --------------------------------------------------------------------------------


def test_a_canary_under_throttles_and_server_errors_finishes_and_says_so(
    aws: Emulator, docs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"faulty-{index}" for index in range(3)]
    for name in names:
        seed_alias(aws, name)
        write_document(docs, rollout_document(name, function=name, version="2", strategy=canary(10, 2, 50, 2)))
    aws.clear_calls()
    rules = [
        FaultRule(action="throttle", service="lambda", probability=0.3),
        FaultRule(action="error", service="lambda", probability=0.05, status=500),
    ]
    with (
        FaultProxy.start(upstream=aws.url, rules=rules, seed=7) as proxy,
        EngineHarness(aws, docs, endpoint=proxy.url) as harness,
        caplog.at_level("WARNING", logger="controller.aws"),
    ):
        harness.drive(lambda: all(alias_routing(aws, name, "live") == ("2", {}) for name in names), max_ticks=100)
        faults = proxy.fault_counts()

    assert sum(n for key, n in faults.items() if key.startswith("lambda:")) > 0, faults
    for name in names:
        # Every step once, in order, whatever was retried.
        assert written_weights(aws, name, "live") == [("2", 0.1), ("2", 0.5), (None, 0.0)]
    said = [r.getMessage() for r in caplog.records if "AWS is slowing down lambda calls" in r.getMessage()]
    assert said, "the throttling was not said"
    assert len(said) < sum(faults.values())  # rate-limited, not one line per fault
