"""The GitOps lease against the strict emulator: the real table, real conditional writes, a real partition.

Two leases race for one item through the DynamoDB adapter (the emulator serves conditional writes
atomically, as AWS does); a standby takes over after a lease duration of silence and at once after a
release; a holder cut off from DynamoDB by the fault proxy stops writing at its renew deadline,
before the standby writes; and the write fence stops a Lambda write at the wire once the lease is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from controller.aws import AwsClients, AwsError, AwsSettings, Budget, Conflict, NotFound, make_clients
from controller.aws.budget import DEFAULT_RATES
from controller.aws.dynamodb import LeaseRecord
from controller.core.types import AliasRouting
from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule
from controller.sources.lease import GitOpsLease, Identity, LeaseSettings, TableStore
from tests.integration.helpers import seed_alias

T = TypeVar("T")
TABLE = "lambda-rollouts-leases"
FAST = LeaseSettings(lease_duration=0.9, renew_deadline=0.6, retry_period=0.12)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def clients(url: str) -> AwsClients:
    budget = Budget(dict.fromkeys(DEFAULT_RATES, 10_000.0))
    return make_clients(AwsSettings(endpoint_url=url, region="us-east-1", max_attempts=2), budget=budget)


def new_lease(aws: AwsClients, name: str, settings: LeaseSettings = FAST, **kwargs: Any) -> GitOpsLease:
    store = TableStore(aws.dynamodb, table=TABLE, name="default")
    return GitOpsLease(store, identity=Identity(host=name, pid=1, token=name), settings=settings, **kwargs)


def test_the_table_is_created_on_demand_and_waited_for(aws: Emulator) -> None:
    aws.configure(table_creation_delay=0.5)
    adapter = clients(aws.url).dynamodb
    with pytest.raises(NotFound):
        run(adapter.ensure_table(TABLE, create=False))
    started = time.monotonic()
    run(adapter.ensure_table(TABLE, create=True, poll=0.1))
    assert time.monotonic() - started >= 0.5, "returned while the table was still CREATING"
    described = aws.client("dynamodb").describe_table(TableName=TABLE)["Table"]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert described["KeySchema"] == [{"AttributeName": "name", "KeyType": "HASH"}]
    run(adapter.ensure_table(TABLE, create=True))  # already there: nothing to do
    assert [c.operation for c in aws.calls() if c.service == "dynamodb"].count("CreateTable") == 1


def test_two_replicas_creating_the_table_at_once_both_get_it(aws: Emulator) -> None:
    first, second = clients(aws.url).dynamodb, clients(aws.url).dynamodb

    async def both() -> None:
        await asyncio.gather(
            first.ensure_table(TABLE, create=True, poll=0.05), second.ensure_table(TABLE, create=True, poll=0.05)
        )

    run(both())
    assert aws.client("dynamodb").describe_table(TableName=TABLE)["Table"]["TableStatus"] == "ACTIVE"


def test_conditional_writes_through_the_adapter(aws: Emulator) -> None:
    adapter = clients(aws.url).dynamodb
    run(adapter.ensure_table(TABLE, create=True, poll=0.05))
    record = LeaseRecord(name="n", holder="a", version="v1", duration=15.0, host="h", pid=7, acquired_at=1.5)
    run(adapter.put_lease(TABLE, record, replacing=None))
    assert run(adapter.read_lease(TABLE, "n")) == record
    with pytest.raises(Conflict):
        run(adapter.put_lease(TABLE, record, replacing=None))
    with pytest.raises(Conflict):
        run(adapter.put_lease(TABLE, record, replacing="v0"))
    run(adapter.renew_lease(TABLE, name="n", holder="a", version="v2", renewed_at=3.0))
    with pytest.raises(Conflict):
        run(adapter.renew_lease(TABLE, name="n", holder="b", version="v3", renewed_at=3.0))
    renewed = run(adapter.read_lease(TABLE, "n"))
    assert renewed is not None and (renewed.version, renewed.renewed_at, renewed.holder) == ("v2", 3.0, "a")
    run(adapter.release_lease(TABLE, name="n", holder="a", version="v4"))
    released = run(adapter.read_lease(TABLE, "n"))
    assert released is not None and (released.holder, released.version) == ("", "v4")
    assert run(adapter.read_lease(TABLE, "other")) is None
    # Every read is strongly consistent: an eventually consistent one may show a replaced version.
    reads = [c for c in aws.calls() if c.operation == "GetItem"]
    assert reads


def test_racing_leases_elect_exactly_one(aws: Emulator) -> None:
    aws.configure(table_creation_delay=0.0)
    racers = [new_lease(clients(aws.url), f"host-{i}") for i in range(5)]
    run(clients(aws.url).dynamodb.ensure_table(TABLE, create=True))

    async def race() -> list[bool]:
        return list(await asyncio.gather(*(lease.try_acquire_or_renew() for lease in racers)))

    assert run(race()).count(True) == 1
    holders = [lease.identity.host for lease in racers if lease.may_write()]
    item = aws.client("dynamodb").get_item(TableName=TABLE, Key={"name": {"S": "default"}}, ConsistentRead=True)
    assert [item["Item"]["host"]["S"]] == holders


def campaign(lease: GitOpsLease, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(lease.run(stop))


def mortal(lease: GitOpsLease) -> asyncio.Task[None]:
    """A campaign that can be killed: cancelling it ends the renewals without a release (SIGKILL)."""

    async def rounds() -> None:
        while True:
            await lease.try_acquire_or_renew()
            await asyncio.sleep(lease.settings.retry_period)

    return asyncio.create_task(rounds())


async def until(predicate: Any, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)
    return time.monotonic()


def test_a_standby_takes_over_after_a_silent_holder_and_at_once_after_a_release(aws: Emulator) -> None:
    run(clients(aws.url).dynamodb.ensure_table(TABLE, create=True, poll=0.05))
    holder, standby = new_lease(clients(aws.url), "holder"), new_lease(clients(aws.url), "standby")

    async def scenario() -> tuple[float, float]:
        stop_standby = asyncio.Event()
        first = mortal(holder)
        await until(holder.may_write)
        second = campaign(standby, stop_standby)
        await asyncio.sleep(3 * FAST.lease_duration)
        assert holder.may_write() and not standby.may_write(), "took over from a holder that renews"
        # The holder is killed: no release, no more renewals.
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        killed = time.monotonic()
        silent = await until(standby.may_write) - killed
        # ... and the new holder stops cleanly: its release hands the lease back to the first one.
        third = new_lease(clients(aws.url), "third")
        stop_third = asyncio.Event()
        third_task = campaign(third, stop_third)
        await asyncio.sleep(FAST.retry_period * 2)
        stop_standby.set()
        await second
        released = time.monotonic()
        handed = await until(third.may_write) - released
        stop_third.set()
        await third_task
        return silent, handed

    silent, handed = run(scenario())
    assert FAST.lease_duration - FAST.retry_period <= silent <= FAST.lease_duration + 2 * FAST.retry_period + 0.2
    assert handed <= FAST.retry_period + 0.2


def test_a_holder_partitioned_from_dynamodb_stops_before_the_standby_writes(aws: Emulator) -> None:
    run(clients(aws.url).dynamodb.ensure_table(TABLE, create=True, poll=0.05))
    proxy = FaultProxy.start(upstream=aws.url)
    try:
        stopped: list[float] = []
        holder = new_lease(clients(proxy.url), "holder", on_lost=lambda: stopped.append(time.monotonic()))
        standby = new_lease(clients(aws.url), "standby")

        async def scenario() -> tuple[float, float]:
            stop = asyncio.Event()
            tasks = [campaign(holder, stop)]
            await until(holder.may_write)
            tasks.append(campaign(standby, stop))
            await asyncio.sleep(2 * FAST.lease_duration)
            # Every DynamoDB call of the holder now hangs (the proxy delays it past botocore's timeout).
            proxy.set_rules([FaultRule(action="latency", service="dynamodb", latency=5.0)])
            cut = time.monotonic()
            took_over = await until(standby.may_write)
            assert stopped, "the holder was still writing when the standby took over"
            assert not holder.may_write()
            stop.set()
            proxy.set_rules([])
            await asyncio.gather(*tasks, return_exceptions=True)
            return stopped[0] - cut, took_over - stopped[0]

        stopped_after, gap = run(scenario())
    finally:
        proxy.stop()
    # It stopped within its renew deadline of the cut (its last renewal was sent before it) ...
    assert stopped_after <= FAST.renew_deadline + 0.05
    # ... and the standby took over no sooner than lease_duration - renew_deadline later.
    assert gap >= FAST.lease_duration - FAST.renew_deadline - FAST.retry_period


def test_the_fence_stops_a_lambda_write_at_the_wire(aws: Emulator) -> None:
    seed_alias(aws, "fenced")
    aws_clients = clients(aws.url)
    writing = [True]
    aws_clients.fence.gate = lambda: writing[0]
    lam = aws_clients.lambda_
    state = run(lam.get_alias("fenced", "live"))
    assert state is not None
    run(lam.update_alias("fenced", "live", AliasRouting("1", "2", 0.1), revision_id=state.revision_id))
    writing[0] = False
    aws.clear_calls()
    with pytest.raises(AwsError) as fenced:
        run(lam.update_alias("fenced", "live", AliasRouting("1", "2", 0.2), revision_id="whatever"))
    assert fenced.value.code == "WriteFenced"
    assert run(lam.get_alias("fenced", "live")) is not None  # reads still pass
    assert [c.operation for c in aws.calls()] == ["GetAlias"], "the fenced write reached AWS"


def test_the_fence_is_asked_again_before_each_retry(aws: Emulator) -> None:
    seed_alias(aws, "retried")
    proxy = FaultProxy.start(upstream=aws.url, rules=[FaultRule("throttle", service="lambda", operation="UpdateAlias")])
    try:
        aws_clients = clients(proxy.url)
        asked: list[bool] = []

        def gate() -> bool:
            asked.append(not asked)  # open for the first attempt only: the lease is lost meanwhile
            return asked[-1]

        aws_clients.fence.gate = gate
        state = run(aws_clients.lambda_.get_alias("retried", "live"))
        assert state is not None
        aws.clear_calls()
        with pytest.raises(AwsError) as fenced:
            run(
                aws_clients.lambda_.update_alias(
                    "retried", "live", AliasRouting("1", "2", 0.1), revision_id=state.revision_id
                )
            )
    finally:
        proxy.stop()
    assert fenced.value.code == "WriteFenced"
    assert asked == [True, False], "botocore's retry was not fenced"
    assert proxy.fault_counts() == {"lambda:UpdateAlias:throttle": 1}
    assert not [c for c in aws.calls() if c.operation == "UpdateAlias"]
