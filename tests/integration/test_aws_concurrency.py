"""The concurrency and async-invocation adapters against the strict emulator, over HTTP: no mocks.

Reserved concurrency (read, set, cleared), provisioned concurrency on a version qualifier (put,
``IN_PROGRESS`` then ``READY`` with the allocation growing, listed by qualifier across pages,
released, "already released" as success, AWS's refusals mapped to our errors) and an alias's event
invoke config (put replaces, read back in the core's vocabulary). Every call goes through the
budget and is reported to the observer, like the other adapter calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from controller.aws import AwsClients, AwsSettings, Budget, InvalidRequest, NotFound, make_clients
from controller.core.types import EventInvokeConfig, ProvisionedStatus
from controller.emulator import Emulator

T = TypeVar("T")

FAST = {"lambda": 1000.0, "cloudwatch.describe_alarms": 1000.0, "tagging": 1000.0, "sts": 1000.0}
QUEUE = "arn:aws:sqs:us-east-1:123456789012:{}"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Recorder:
    """An ``ApiObserver`` that keeps every (operation, outcome) it is told."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        assert service == "lambda" and seconds >= 0
        self.calls.append((operation, outcome))

    def budget_wait(self, *, family: str, seconds: float) -> None:
        pass


@pytest.fixture
def observer() -> Recorder:
    return Recorder()


@pytest.fixture
def clients(aws: Emulator, observer: Recorder) -> AwsClients:
    return make_clients(
        AwsSettings(endpoint_url=aws.url, region="us-east-1", max_attempts=2), budget=Budget(FAST), observer=observer
    )


def test_reserved_concurrency_read_set_and_cleared(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-reserved", versions=1)
    lam = clients.lambda_
    assert run(lam.get_reserved_concurrency("fn-reserved")) is None
    run(lam.put_reserved_concurrency("fn-reserved", 25))
    assert run(lam.get_reserved_concurrency("fn-reserved")) == 25
    assert (
        aws.client("lambda").get_function_concurrency(FunctionName="fn-reserved")["ReservedConcurrentExecutions"] == 25
    )
    run(lam.delete_reserved_concurrency("fn-reserved"))
    assert run(lam.get_reserved_concurrency("fn-reserved")) is None
    # AWS keeps 100 unreserved: asking for the whole account is refused, as a wrong request.
    with pytest.raises(InvalidRequest):
        run(lam.put_reserved_concurrency("fn-reserved", 1000))
    with pytest.raises(NotFound):
        run(lam.put_reserved_concurrency("no-such-function", 5))
    assert observer.calls[:3] == [
        ("GetFunctionConcurrency", "ok"),
        ("PutFunctionConcurrency", "ok"),
        ("GetFunctionConcurrency", "ok"),
    ]
    assert ("DeleteFunctionConcurrency", "ok") in observer.calls
    assert ("PutFunctionConcurrency", "not_found") in observer.calls


def test_provisioned_concurrency_warms_up_and_is_released(
    aws: Emulator, clients: AwsClients, observer: Recorder
) -> None:
    aws.seed_function("fn-pc", versions=2)
    lam = clients.lambda_
    assert run(lam.get_provisioned("fn-pc", "2")) is None
    assert run(lam.list_provisioned("fn-pc")) == {}

    put = run(lam.put_provisioned("fn-pc", "2", 10))
    assert (put.qualifier, put.requested, put.status) == ("2", 10, ProvisionedStatus.IN_PROGRESS)
    first = run(lam.get_provisioned("fn-pc", "2"))
    assert first is not None and first.status is ProvisionedStatus.IN_PROGRESS and first.allocated < 10

    ready = aws.wait_for(lambda: _ready(clients, "fn-pc", "2"), timeout=5.0)
    assert ready.allocated == ready.requested == 10

    run(lam.put_provisioned("fn-pc", "1", 5))
    listed = run(lam.list_provisioned("fn-pc"))
    assert sorted(listed) == ["1", "2"]
    assert listed["1"].requested == 5 and listed["2"].status is ProvisionedStatus.READY

    assert run(lam.delete_provisioned("fn-pc", "2")) is True
    assert run(lam.delete_provisioned("fn-pc", "2")) is False  # already released: not an error
    assert sorted(run(lam.list_provisioned("fn-pc"))) == ["1"]
    assert ("DeleteProvisionedConcurrencyConfig", "not_found") in observer.calls
    assert ("GetProvisionedConcurrencyConfig", "not_found") in observer.calls


def _ready(clients: AwsClients, function: str, qualifier: str) -> Any:
    config = run(clients.lambda_.get_provisioned(function, qualifier))
    return config if config is not None and config.status is ProvisionedStatus.READY else None


def test_provisioned_concurrency_refusals(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-pc-no", versions=2)
    lam = aws.client("lambda")
    # $LATEST cannot be provisioned; a weighted alias cannot be either (AWS's rule, hence versions).
    with pytest.raises(InvalidRequest):
        run(clients.lambda_.put_provisioned("fn-pc-no", "$LATEST", 1))
    lam.create_alias(
        FunctionName="fn-pc-no",
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    with pytest.raises(InvalidRequest) as weighted:
        run(clients.lambda_.put_provisioned("fn-pc-no", "live", 1))
    assert "weights" in weighted.value.message
    # ... while each version of that weighted alias can be: one config per version.
    run(clients.lambda_.put_provisioned("fn-pc-no", "2", 3))
    with pytest.raises(NotFound):
        run(clients.lambda_.put_provisioned("fn-pc-no", "9", 1))


def test_list_provisioned_reads_every_page(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-pc-many", versions=3)
    for version in ("1", "2", "3"):
        run(clients.lambda_.put_provisioned("fn-pc-many", version, 1))
    assert sorted(run(clients.lambda_.list_provisioned("fn-pc-many"))) == ["1", "2", "3"]
    sent = [c.params for c in aws.calls() if c.operation == "ListProvisionedConcurrencyConfigs"]
    assert sent and all(p.get("FunctionName") == "fn-pc-many" for p in sent)
    assert ("ListProvisionedConcurrencyConfigs", "ok") in observer.calls


def test_event_invoke_config_put_replaces_and_reads_back(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-async", versions=1)
    lam = clients.lambda_
    aws.client("lambda").create_alias(FunctionName="fn-async", Name="live", FunctionVersion="1")
    assert run(lam.get_event_invoke_config("fn-async", "live")) is None

    declared = EventInvokeConfig(
        maximum_retry_attempts=1,
        maximum_event_age_seconds=3600,
        on_success=QUEUE.format("done"),
        on_failure=QUEUE.format("dlq"),
    )
    assert run(lam.put_event_invoke_config("fn-async", "live", declared)) == declared
    assert run(lam.get_event_invoke_config("fn-async", "live")) == declared
    # The function itself ($LATEST) is untouched: the config is the alias's.
    assert run(lam.get_event_invoke_config("fn-async", "$LATEST")) is None

    # Put replaces the whole config: what is no longer declared goes back to AWS's defaults.
    smaller = EventInvokeConfig(maximum_retry_attempts=0)
    run(lam.put_event_invoke_config("fn-async", "live", smaller))
    assert run(lam.get_event_invoke_config("fn-async", "live")) == smaller

    # AWS's limits are the emulator's: retries 0-2, age 60-21600, no S3 on success.
    for wrong in (
        EventInvokeConfig(maximum_retry_attempts=3),
        EventInvokeConfig(maximum_event_age_seconds=59),
        EventInvokeConfig(on_success="arn:aws:s3:::bucket"),
    ):
        with pytest.raises(InvalidRequest):
            run(lam.put_event_invoke_config("fn-async", "live", wrong))
