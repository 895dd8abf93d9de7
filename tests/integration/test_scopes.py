"""One controller, two AWS accounts: one engine per scope, and one account's trouble stays its own.

Against the strict emulator over HTTP (through the fault proxy, which throttles one account by its
own quota): the engines run as the daemons run them (``ScopedEngines.run``, real time, short ticks),
the other account's role is assumed with its external ID, and the same function name lives in both
accounts without being taken for a duplicate. What is checked comes from the emulator's call log
(which account each call landed in), the proxy's counts and the metrics; the times are printed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.aws import AwsClients, AwsSettings, make_clients
from controller.core.reasons import Reason
from controller.core.types import Phase
from controller.document.accounts import AccountsConfig, Scope
from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, Quota
from controller.observability.prometheus import Metrics
from controller.runtime.engine import Engine, EngineSettings
from controller.runtime.scopes import ClientsFactory, ScopedEngines, Scopes, Shard
from controller.runtime.sink import FanoutSink, MetricsSink
from controller.sources.files import FileSource
from tests.integration.helpers import MemorySink, canary, rollout_document, write_document

OURS = "123456789012"
THEIRS = "111111111111"
ROLE_NAME = "lambda-rollouts"
EXTERNAL_ID = "tenant-7"
REGION = "us-east-1"
FUNCTIONS = ("api", "worker", "billing")
INTERVAL = 0.2


@pytest.fixture
def proxy(aws: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy.start(upstream=aws.url) as started:
        yield started


def seed(aws: Emulator, *, account: str | None) -> None:
    """The same three functions, each with ``live`` on version 1, in ``account`` (None: ours)."""
    for name in FUNCTIONS:
        aws.seed_function(name, versions=2, account=account)
        aws.client("lambda", account=account).create_alias(FunctionName=name, Name="live", FunctionVersion="1")


def documents(directory: Path, namespace: str, *, names: tuple[str, ...] = FUNCTIONS) -> None:
    for name in names:
        document = rollout_document(name, function=name, version="2", strategy=canary(20, 0.1, 60), namespace=namespace)
        write_document(directory, document, f"{namespace}-{name}.yaml")


@dataclass
class World:
    engines: ScopedEngines
    sink: MemorySink
    metrics: Metrics
    source: FileSource


def world(
    aws: Emulator, directory: Path, *, endpoint: str, accounts: AccountsConfig, shard: Shard | None = None
) -> World:
    metrics = Metrics()
    settings = AwsSettings(endpoint_url=endpoint, region=REGION, max_attempts=3)
    own = make_clients(settings, observer=metrics.aws_observer(account="default", region=REGION))
    factory = ClientsFactory(own=own, settings=settings, metrics=metrics, session_name="lambda-rollouts-test")
    scopes = Scopes(region=REGION, accounts=accounts)
    sink = MemorySink()
    engine_settings = EngineSettings(interval=INTERVAL, drift_interval=3600.0)

    def new_engine(clients: AwsClients, scope: Scope) -> Engine:
        return Engine(clients, settings=engine_settings, sinks=(sink, MetricsSink(metrics)))

    engines = ScopedEngines(
        scopes=scopes,
        clients=factory.clients,
        new_engine=new_engine,
        sink=FanoutSink([sink, MetricsSink(metrics)]),
        serves=shard.serves if shard is not None else (lambda _scope: True),
        always=scopes.always(),
        metrics=metrics,
        interval=INTERVAL,
    )
    return World(engines, sink, metrics, FileSource(directory, placement=scopes.placement))


async def run_until(w: World, done: Callable[[], bool], *, timeout: float) -> float:
    """Run the engines as a daemon does until ``done()``; the seconds it took."""
    stop = asyncio.Event()
    await w.engines.apply(w.source.scan())
    started = time.monotonic()
    runner = asyncio.create_task(w.engines.run(stop=stop))
    try:
        while not done():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"not done after {timeout}s: {w.sink.statuses}")
            await asyncio.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(runner, timeout=15)


def healthy(w: World, namespace: str) -> Callable[[], bool]:
    def check() -> bool:
        statuses = [w.sink.statuses.get(f"{namespace}/{name}") for name in FUNCTIONS]
        return all(s is not None and s.phase is Phase.HEALTHY and s.stable_version == "2" for s in statuses)

    return check


def accounts_config(role: str, *, external_id: str = EXTERNAL_ID) -> AccountsConfig:
    return AccountsConfig(namespaces={"theirs": Scope(role_arn=role, external_id=external_id)}, source="accounts.yaml")


def updates_in(aws: Emulator, account: str) -> int:
    return sum(1 for c in aws.calls() if c.operation == "UpdateAlias" and c.status < 300 and c.account == account)


async def test_a_throttled_account_does_not_slow_the_other(aws: Emulator, proxy: FaultProxy, tmp_path: Path) -> None:
    seed(aws, account=None)
    seed(aws, account=THEIRS)
    role = aws.trusting_role(ROLE_NAME, account=THEIRS, external_id=EXTERNAL_ID)
    config = accounts_config(role)

    # Baseline: our account's three rollouts alone.
    alone = tmp_path / "alone"
    alone.mkdir()
    documents(alone, "ours")
    baseline = world(aws, alone, endpoint=proxy.url, accounts=config)
    baseline_seconds = await run_until(baseline, healthy(baseline, "ours"), timeout=60)
    for name in FUNCTIONS:  # back to the start for the measured run
        aws.client("lambda").update_alias(FunctionName=name, Name="live", FunctionVersion="1")
        arn = aws.client("lambda").get_function_configuration(FunctionName=name)["FunctionArn"]
        tags = aws.client("lambda").list_tags(Resource=arn)["Tags"]
        aws.client("lambda").untag_resource(Resource=arn, TagKeys=list(tags))

    # Now both accounts, theirs throttled by AWS far below what its rollouts ask for.
    both = tmp_path / "both"
    both.mkdir()
    documents(both, "ours")
    documents(both, "theirs")
    proxy.set_quotas([Quota("lambda-control-plane", "lambda", rate=1.0, burst=1.0, account=THEIRS)])
    aws.clear_calls()
    measured = world(aws, both, endpoint=proxy.url, accounts=config)
    seconds = await run_until(measured, healthy(measured, "ours"), timeout=60)

    theirs_done = healthy(measured, "theirs")()
    print(
        f"\nours alone: {baseline_seconds:.2f}s to Healthy; ours beside theirs throttled at 1 call/s: "
        f"{seconds:.2f}s; theirs done by then: {theirs_done}; faults injected: {proxy.fault_counts()}"
    )
    # Ours finished while theirs, throttled, did not; none of our calls waited on theirs.
    assert not theirs_done
    assert sum(v for k, v in proxy.fault_counts().items() if k.endswith(":quota")) > 0
    assert updates_in(aws, OURS) == 3 * len(FUNCTIONS)
    assert updates_in(aws, THEIRS) < 3 * len(FUNCTIONS)
    ours_throttled = [
        sample.value
        for metric in measured.metrics.registry.collect()
        if metric.name == "lambda_rollouts_aws_api_calls"
        for sample in metric.samples
        if sample.labels.get("outcome") == "throttled" and sample.labels.get("account") == "default"
    ]
    assert sum(ours_throttled) == 0
    # Every call of the other account's rollouts was signed by the assumed role, in that account.
    assert {c.account for c in aws.calls() if c.service == "lambda" and c.params.get("FunctionName")} == {OURS, THEIRS}
    assumed = [c for c in aws.calls() if c.operation == "AssumeRole"]
    assert len(assumed) == 1 and assumed[0].account == OURS


async def test_a_role_that_cannot_be_assumed_blocks_only_its_account(
    aws: Emulator, proxy: FaultProxy, tmp_path: Path
) -> None:
    seed(aws, account=None)
    seed(aws, account=THEIRS)
    role = aws.trusting_role(ROLE_NAME, account=THEIRS, external_id="the-right-one")
    documents(tmp_path, "ours")
    documents(tmp_path, "theirs")
    w = world(aws, tmp_path, endpoint=proxy.url, accounts=accounts_config(role, external_id="a-wrong-one"))
    aws.clear_calls()

    def blocked_and_ours_done() -> bool:
        theirs = [w.sink.statuses.get(f"theirs/{name}") for name in FUNCTIONS]
        return healthy(w, "ours")() and all(
            s is not None and s.reason == Reason.CREDENTIALS_UNAVAILABLE for s in theirs
        )

    await run_until(w, blocked_and_ours_done, timeout=60)
    status = w.sink.statuses["theirs/api"]
    assert status.phase is Phase.INVALID
    assert status.errors[0].startswith("AccessDenied: User: arn:aws:iam::123456789012:user/moto is not authorized")
    assert "a-wrong-one" not in json.dumps([status.message, *status.errors])
    events = w.sink.events["theirs/api"]
    assert [e.reason for e in events] == [Reason.CREDENTIALS_UNAVAILABLE] and events[0].warning
    assert w.metrics.scope_credentials.labels(THEIRS, REGION)._value.get() == 0
    assert w.metrics.scope_credentials.labels("default", REGION)._value.get() == 1
    assert updates_in(aws, THEIRS) == 0
    assert not any(c.account == THEIRS for c in aws.calls())

    # The role is fixed in the other account (its trust policy now names this external ID): the
    # blocked scope is tried again by itself and its rollouts run.
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OURS}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "a-wrong-one"}},
            }
        ],
    }
    aws.client("iam", account=THEIRS).update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(trust))
    await run_until(w, healthy(w, "theirs"), timeout=90)
    assert w.metrics.scope_credentials.labels(THEIRS, REGION)._value.get() == 1
    assert updates_in(aws, THEIRS) == 3 * len(FUNCTIONS)


async def test_a_shard_serves_only_its_account(aws: Emulator, proxy: FaultProxy, tmp_path: Path) -> None:
    seed(aws, account=None)
    seed(aws, account=THEIRS)
    role = aws.trusting_role(ROLE_NAME, account=THEIRS, external_id=EXTERNAL_ID)
    documents(tmp_path, "ours")
    documents(tmp_path, "theirs")
    w = world(aws, tmp_path, endpoint=proxy.url, accounts=accounts_config(role), shard=Shard.parse(THEIRS))
    await run_until(w, healthy(w, "theirs"), timeout=60)
    assert not any(key.startswith("ours/") for key in w.sink.statuses)
    assert updates_in(aws, OURS) == 0
    assert set(w.engines.engines()) == {Scope(role_arn=role, external_id=EXTERNAL_ID, region=REGION)}
