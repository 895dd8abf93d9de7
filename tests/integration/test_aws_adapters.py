"""The AWS adapters against the strict emulator, over HTTP, through boto3 and botocore: no mocks.

Each adapter method is exercised on the wire: alias reads and RevisionId-guarded writes (a stale
RevisionId is refused by the strict emulator, as by AWS), clearing weights, not-found mapping, the
batched and paginated alarm reads (counted in the emulator's call log), GetResources pagination,
publishing guarded by the code hash, the durable record round trip through real tags, what the
observer is told, and throttling (provoked by the emulator's fault proxy) surfacing as ``Throttled``.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from controller.aws import (
    AliasState,
    AwsClients,
    AwsError,
    AwsSettings,
    Budget,
    Conflict,
    InvalidRequest,
    NotFound,
    Throttled,
    make_clients,
)
from controller.aws.errors import from_boto
from controller.core.codec import MANAGED_KEY, decode_record, encode_managed, encode_record, stale_record_keys
from controller.core.types import AliasRouting, AliasWrite, HistoryEntry, Phase, Record
from controller.emulator import Emulator
from controller.emulator.server import zip_code

T = TypeVar("T")

FAST = {"lambda": 1000.0, "cloudwatch.describe_alarms": 1000.0, "tagging": 1000.0, "sts": 1000.0}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Recorder:
    """An ``ApiObserver`` that keeps everything it is told."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    waits: list[tuple[str, float]] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((service, operation, outcome))

    def budget_wait(self, *, family: str, seconds: float) -> None:
        self.waits.append((family, seconds))

    def api_retry(self, *, service: str, operation: str, reason: str) -> None:
        self.retries.append((operation, reason))

    def ops(self, operation: str) -> list[str]:
        return [outcome for _, op, outcome in self.calls if op == operation]


@pytest.fixture
def observer() -> Recorder:
    return Recorder()


@pytest.fixture
def clients(aws: Emulator, observer: Recorder) -> AwsClients:
    return make_clients(
        AwsSettings(endpoint_url=aws.url, region="us-east-1", max_attempts=2),
        budget=Budget(FAST),
        observer=observer,
    )


def emulator_calls(aws: Emulator, operation: str) -> int:
    return sum(1 for c in aws.calls() if c.operation == operation)


# ---- functions and versions ---------------------------------------------------------------------------


def test_get_function(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-info", versions=1, tags={"team": "payments"})
    aws.clear_calls()
    info = run(clients.lambda_.get_function("fn-info"))
    assert info is not None
    assert info.name == "fn-info"
    assert info.arn.endswith(":function:fn-info")
    assert info.arn.count(":") == 6  # unqualified: what the tag APIs take
    assert info.role.endswith(":role/lambda-rollouts-test-role")
    assert info.revision_id
    assert info.tags == {"team": "payments"}  # the same call: no ListTags
    # By ARN too.
    by_arn = run(clients.lambda_.get_function(info.arn))
    assert by_arn is not None and by_arn.name == "fn-info"
    assert run(clients.lambda_.get_function("no-such-function")) is None
    # GetFunction, in a budget family of its own: AWS does not count it in the control-plane quota.
    assert observer.ops("GetFunction") == ["ok", "ok", "not_found"]
    assert [c.operation for c in aws.calls() if c.service == "lambda"] == ["GetFunction"] * 3


def test_get_version(aws: Emulator, clients: AwsClients) -> None:
    versions = aws.seed_function("fn-versions", versions=2)
    info = run(clients.lambda_.get_version("fn-versions", versions[1]))
    assert info is not None
    assert info.version == versions[1]
    assert info.role.endswith(":role/lambda-rollouts-test-role")
    assert info.dead_letter_target is None
    assert run(clients.lambda_.get_version("fn-versions", "99")) is None
    assert run(clients.lambda_.get_version("no-such-function", "1")) is None


def test_get_version_reports_dead_letter_target(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-dlq", versions=1)
    queue_arn = "arn:aws:sqs:us-east-1:123456789012:dlq"
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam = aws.client("lambda")
    lam.update_function_configuration(FunctionName="fn-dlq", DeadLetterConfig={"TargetArn": queue_arn})
    version = lam.publish_version(FunctionName="fn-dlq")["Version"]
    info = run(clients.lambda_.get_version("fn-dlq", version))
    assert info is not None
    assert info.dead_letter_target == queue_arn


def _latest_sha(aws: Emulator, function: str) -> str:
    return str(aws.client("lambda").get_function_configuration(FunctionName=function)["CodeSha256"])


def test_publish_version_is_guarded_by_the_code_hash(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    versions = aws.seed_function("fn-publish", versions=1)
    lam = aws.client("lambda")
    lam.update_function_code(FunctionName="fn-publish", ZipFile=zip_code("def handler(e, c):\n    return 'new'\n"))
    sha = _latest_sha(aws, "fn-publish")
    with pytest.raises(InvalidRequest) as refused:
        run(clients.lambda_.publish_version("fn-publish", code_sha256="A" * 43 + "=", description="wrong"))
    assert refused.value.code == "InvalidParameterValueException"
    assert "CodeSHA256" in refused.value.message
    assert refused.value.operation == "PublishVersion"
    published = run(clients.lambda_.publish_version("fn-publish", code_sha256=sha, description="v2.1.0"))
    assert published not in versions and published.isdigit()
    config = lam.get_function_configuration(FunctionName="fn-publish", Qualifier=published)
    assert config["CodeSha256"] == sha
    assert config["Description"] == "v2.1.0"
    assert observer.ops("PublishVersion") == ["error", "ok"]


def test_find_version_by_sha_returns_the_newest_match(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-sha", versions=3)
    lam = aws.client("lambda")
    sha_of = {
        v["Version"]: v["CodeSha256"]
        for v in lam.list_versions_by_function(FunctionName="fn-sha")["Versions"]
        if v["Version"] != "$LATEST"
    }
    found = run(clients.lambda_.find_version_by_sha("fn-sha", sha_of["2"]))
    assert (found.version, found.latest_code_sha256) == ("2", _latest_sha(aws, "fn-sha"))
    assert run(clients.lambda_.find_version_by_sha("fn-sha", "Z" * 43 + "=")).version is None
    # $LATEST carries a hash too (the code of version 3, then new code): never returned.
    lam.update_function_code(FunctionName="fn-sha", ZipFile=zip_code("def handler(e, c):\n    return 'unpublished'\n"))
    assert run(clients.lambda_.find_version_by_sha("fn-sha", _latest_sha(aws, "fn-sha"))).version is None
    # The same code published again later: the newest version wins.
    code_a = zip_code("def handler(e, c):\n    return 'a'\n")
    code_b = zip_code("def handler(e, c):\n    return 'b'\n")
    published = []
    for code in (code_a, code_b, code_a):
        lam.update_function_code(FunctionName="fn-sha", ZipFile=code)
        published.append(lam.publish_version(FunctionName="fn-sha")["Version"])
    assert len(set(published)) == 3
    sha_a = lam.get_function_configuration(FunctionName="fn-sha", Qualifier=published[0])["CodeSha256"]
    assert run(clients.lambda_.find_version_by_sha("fn-sha", sha_a)).version == published[2]


# ---- aliases -------------------------------------------------------------------------------------------------


def test_alias_create_read_update_clear(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-alias", versions=3)
    lam = clients.lambda_
    assert run(lam.get_alias("fn-alias", "prod")) is None
    created = run(lam.create_alias("fn-alias", "prod", AliasRouting("1")))
    assert created.routing == AliasRouting("1")
    assert created.revision_id
    assert run(lam.get_alias("fn-alias", "prod")) == created

    canary = run(lam.update_alias("fn-alias", "prod", AliasRouting("1", "2", 0.1), revision_id=created.revision_id))
    assert canary.routing == AliasRouting("1", "2", 0.1)
    assert canary.revision_id != created.revision_id
    read = run(lam.get_alias("fn-alias", "prod"))
    assert read is not None and read.routing.same_as(AliasRouting("1", "2", 0.1))

    # The final step: primary on the new version, weights cleared.
    done = run(lam.update_alias("fn-alias", "prod", AliasRouting("2"), revision_id=canary.revision_id))
    assert done.routing == AliasRouting("2")
    raw = aws.client("lambda").get_alias(FunctionName="fn-alias", Name="prod")
    assert not (raw.get("RoutingConfig") or {}).get("AdditionalVersionWeights")

    # A zero weight also clears (the canary version stays named nowhere).
    again = run(lam.update_alias("fn-alias", "prod", AliasRouting("2", "3", 0.5), revision_id=done.revision_id))
    cleared = run(lam.update_alias("fn-alias", "prod", AliasRouting("2", "3", 0.0), revision_id=again.revision_id))
    assert cleared.routing == AliasRouting("2")
    assert observer.ops("GetAlias") == ["not_found", "ok", "ok"]
    assert observer.ops("UpdateAlias") == ["ok"] * 4


def test_create_alias_with_weights_and_existing_alias(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-alias2", versions=2)
    state = run(clients.lambda_.create_alias("fn-alias2", "live", AliasRouting("1", "2", 0.25)))
    assert state.routing == AliasRouting("1", "2", 0.25)
    with pytest.raises(Conflict):
        run(clients.lambda_.create_alias("fn-alias2", "live", AliasRouting("1")))


def test_update_alias_always_sends_the_revision_id(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-rev", versions=3)
    sent: list[dict[str, Any]] = []
    client = clients.lambda_._caller.client
    client.meta.events.register("provide-client-params.lambda.UpdateAlias", lambda params, **_: sent.append(params))

    first = run(clients.lambda_.create_alias("fn-rev", "prod", AliasRouting("1")))
    second = run(
        clients.lambda_.update_alias("fn-rev", "prod", AliasRouting("1", "2", 0.2), revision_id=first.revision_id)
    )
    assert sent[-1]["RevisionId"] == first.revision_id
    assert sent[-1]["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.2}}

    # Someone moves the alias by hand meanwhile: our write with the stale RevisionId is refused.
    aws.client("lambda").update_alias(FunctionName="fn-rev", Name="prod", FunctionVersion="3")
    with pytest.raises(Conflict) as conflict:
        run(clients.lambda_.update_alias("fn-rev", "prod", AliasRouting("2"), revision_id=second.revision_id))
    assert conflict.value.code == "PreconditionFailedException"
    assert sent[-1]["RevisionId"] == second.revision_id
    # ... and nothing was clobbered.
    state = run(clients.lambda_.get_alias("fn-rev", "prod"))
    # (UpdateAlias without RoutingConfig keeps the weights: why the adapter always sends one.)
    assert state is not None and state.routing.primary == "3"
    assert observer.ops("UpdateAlias") == ["ok", "conflict"]


def test_not_found_mapping(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-nf", versions=1)
    lam = clients.lambda_
    with pytest.raises(NotFound) as missing_alias:
        run(lam.update_alias("fn-nf", "nope", AliasRouting("1"), revision_id="x"))
    assert missing_alias.value.code == "ResourceNotFoundException"
    assert missing_alias.value.message
    with pytest.raises(NotFound):
        run(lam.create_alias("no-such-function", "prod", AliasRouting("1")))
    assert run(lam.get_alias("no-such-function", "prod")) is None
    with pytest.raises(NotFound):
        run(lam.list_tags("arn:aws:lambda:us-east-1:123456789012:function:no-such-function"))
    assert {outcome for _, _, outcome in observer.calls} == {"not_found"}


def test_invalid_routing_is_an_invalid_request(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    aws.seed_function("fn-bad", versions=2)
    state = run(clients.lambda_.create_alias("fn-bad", "prod", AliasRouting("1")))
    with pytest.raises(InvalidRequest):
        run(clients.lambda_.update_alias("fn-bad", "prod", AliasRouting("1", "2", 1.5), revision_id=state.revision_id))
    with pytest.raises(InvalidRequest):
        run(
            clients.lambda_.update_alias(
                "fn-bad", "prod", AliasRouting("1", "$LATEST", 0.1), revision_id=state.revision_id
            )
        )
    assert observer.ops("UpdateAlias") == ["error", "error"]


# ---- tags and the durable record ------------------------------------------------------------------------------


def test_tags_and_durable_record_round_trip(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-tags", versions=1, tags={f"team:t{i}": f"v{i}" for i in range(10)})
    info = run(clients.lambda_.get_function("fn-tags"))
    assert info is not None
    lam = clients.lambda_
    long_record = Record(
        spec_hash="f" * 64,
        phase=Phase.PROGRESSING,
        stable="1",
        canary="2",
        step_index=4,
        step_started_at=1_700_000_000.5,
        weight=25,
        pending=AliasWrite("prod", AliasRouting("1", "2", 0.25)),
        history=tuple(HistoryEntry(str(i), "RolledBack", "alarm x-" + "é" * 40 + str(i), float(i)) for i in range(5)),
        message="\u2603 " * 300,
    )
    tags = {**encode_record("prod", long_record), MANAGED_KEY: encode_managed({"prod": "payments/brand-api"})}
    assert len(tags) > 2
    run(lam.tag(info.arn, tags))  # one call: every chunk lands at once
    stored = run(lam.list_tags(info.arn))
    assert len(stored) == 10 + len(tags)
    assert decode_record("prod", stored) is not None

    # A shorter record replaces it; the leftover chunks are removed afterwards.
    short = Record(stable="2", phase=Phase.HEALTHY)
    new_tags = encode_record("prod", short)
    run(lam.tag(info.arn, new_tags))
    assert decode_record("prod", run(lam.list_tags(info.arn))) == short
    stale = stale_record_keys("prod", stored, new_tags)
    assert stale
    run(lam.untag(info.arn, stale))
    final = run(lam.list_tags(info.arn))
    assert decode_record("prod", final) == short
    assert not stale_record_keys("prod", final, new_tags)
    assert sum(1 for k in final if k.startswith("team:")) == 10


def test_tag_limits_surface_as_invalid_request(aws: Emulator, clients: AwsClients) -> None:
    aws.seed_function("fn-limits", versions=1)
    info = run(clients.lambda_.get_function("fn-limits"))
    assert info is not None
    with pytest.raises(InvalidRequest):
        run(clients.lambda_.tag(info.arn, {"lambda-rollouts/bad": "{json}"}))
    with pytest.raises(InvalidRequest):
        run(clients.lambda_.tag(info.arn, {f"k{i}": "v" for i in range(51)}))


def test_empty_tag_writes_make_no_call(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    run(clients.lambda_.tag("arn:aws:lambda:us-east-1:123456789012:function:x", {}))
    run(clients.lambda_.untag("arn:aws:lambda:us-east-1:123456789012:function:x", []))
    assert observer.calls == []


def test_functions_with_tag_paginates(aws: Emulator, clients: AwsClients, observer: Recorder) -> None:
    # GetResources returns at most 100 functions a page (as AWS does): 120 take two pages.
    extra = {f"team:t{i}": "x" for i in range(11)}
    for i in range(120):
        aws.seed_function(f"managed-{i:03d}", versions=0, tags={MANAGED_KEY: f"prod=ns/r{i}", **extra})
    for i in range(3):
        aws.seed_function(f"unmanaged-{i}", versions=0, tags=extra)
    found = run(clients.tagging.functions_with_tag(MANAGED_KEY))
    assert len(found) == 120
    for arn, tags in found.items():
        name = arn.rsplit(":", 1)[-1]
        assert name.startswith("managed-")
        assert tags[MANAGED_KEY] == f"prod=ns/r{int(name[-3:])}"
        assert len(tags) == 12
    pages = observer.ops("GetResources")
    assert pages == ["ok"] * len(pages)
    assert len(pages) == emulator_calls(aws, "GetResources") >= 2
    assert run(clients.tagging.functions_with_tag("no-such-key")) == {}


def test_caller_arn(aws: Emulator, clients: AwsClients) -> None:
    arn = run(clients.sts.caller_arn())
    assert arn.startswith("arn:aws:")


# ---- alarms ----------------------------------------------------------------------------------------------------


@pytest.fixture
def alarms(aws: Emulator) -> Iterator[list[str]]:
    """230 alarms, 150 of them in ALARM (the emulator's own evaluation paused so the states hold)."""
    aws.configure(alarm_evaluation=False)
    cw = aws.client("cloudwatch")
    names = [f"alarm-{i:03d}" for i in range(230)]
    for name in names:
        cw.put_metric_alarm(
            AlarmName=name,
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Dimensions=[{"Name": "FunctionName", "Value": "fn"}],
            Statistic="Sum",
            Period=60,
            EvaluationPeriods=1,
            Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )
    for name in names[:150]:
        cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    aws.clear_calls()
    yield names


def test_alarms_in_alarm_pages_through_all(
    aws: Emulator, clients: AwsClients, observer: Recorder, alarms: list[str]
) -> None:
    firing = run(clients.cloudwatch.alarms_in_alarm())
    assert firing == frozenset(alarms[:150])
    calls = emulator_calls(aws, "DescribeAlarms")
    assert observer.ops("DescribeAlarms") == ["ok"] * calls
    # AWS returns at most 100 alarms per page; a backend that paginates takes two calls for 150.
    # (One call when the backend returns everything at once; never one call per alarm.)
    raw = aws.client("cloudwatch").describe_alarms(StateValue="ALARM", MaxRecords=100)
    paginates = "NextToken" in raw
    assert calls == (math.ceil(150 / 100) if paginates else 1)


def test_missing_alarms_asks_100_names_per_call(aws: Emulator, clients: AwsClients, alarms: list[str]) -> None:
    wanted = [*alarms, *(f"ghost-{i}" for i in range(20))]  # 250 names
    missing = run(clients.cloudwatch.missing_alarms(wanted))
    assert missing == frozenset(f"ghost-{i}" for i in range(20))
    assert emulator_calls(aws, "DescribeAlarms") == 3
    assert all(len(c.params.get("AlarmNames", [])) <= 100 for c in aws.calls() if c.params.get("AlarmNames"))
    aws.clear_calls()
    assert run(clients.cloudwatch.missing_alarms([])) == frozenset()
    assert run(clients.cloudwatch.missing_alarms(["alarm-001", "alarm-001"])) == frozenset()
    assert emulator_calls(aws, "DescribeAlarms") == 1


# ---- budget, observer, throttling ------------------------------------------------------------------------------


def test_budget_waits_are_reported(aws: Emulator, observer: Recorder) -> None:
    aws.seed_function("fn-budget", versions=1)
    slow = make_clients(
        AwsSettings(endpoint_url=aws.url, region="us-east-1"), budget=Budget({"lambda": 20.0}), observer=observer
    )

    async def many() -> list[AliasState | None]:
        return list(await asyncio.gather(*(slow.lambda_.get_alias("fn-budget", "none") for _ in range(30))))

    assert run(many()) == [None] * 30
    assert observer.waits, "30 calls at 20/s must wait for tokens"
    assert {family for family, _ in observer.waits} == {"lambda"}
    assert slow.budget.stats()["lambda"] > 0


def test_throttling_maps_to_throttled(aws: Emulator, observer: Recorder) -> None:
    proxy_mod = pytest.importorskip("controller.emulator.proxy")
    aws.seed_function("fn-throttle", versions=1)
    proxy = proxy_mod.FaultProxy.start(
        aws.url, rules=[proxy_mod.FaultRule(action="throttle", service="lambda", operation="GetAlias")]
    )
    try:
        throttled = make_clients(
            AwsSettings(endpoint_url=proxy.url, region="us-east-1", max_attempts=2),
            budget=Budget(FAST),
            observer=observer,
        )
        with pytest.raises(Throttled) as exc:
            run(throttled.lambda_.get_alias("fn-throttle", "prod"))
        assert exc.value.code == "TooManyRequestsException"
        assert exc.value.transient == "throttled"  # the engine retries such a reconcile soon
        # Retried once (max_attempts=2) before giving up; the observer saw both attempts, one retry.
        assert proxy.fault_counts() == {"lambda:GetAlias:throttle": 2}
        assert observer.ops("GetAlias") == ["throttled", "throttled"]
        assert observer.retries == [("GetAlias", "throttled")]

        # A transient throttle is absorbed by the caller's own retries.
        proxy.set_rules([proxy_mod.FaultRule(action="throttle", service="lambda", operation="GetFunction", count=1)])
        info = run(throttled.lambda_.get_function("fn-throttle"))
        assert info is not None
        assert observer.ops("GetFunction") == ["throttled", "ok"]
    finally:
        proxy.stop()


class CountingBudget(Budget):
    """A budget that counts the tokens taken per family: every attempt must take one."""

    def __init__(self, rates: dict[str, float]) -> None:
        super().__init__(rates)
        self.taken: dict[str, int] = {}

    async def acquire(self, family: str, *, priority: bool = False) -> float:
        self.taken[family] = self.taken.get(family, 0) + 1
        return await super().acquire(family, priority=priority)


def test_transient_faults_are_retried_within_the_budget_and_said_once(
    aws: Emulator, observer: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Throttles, 500s and dropped connections are retried, each attempt with a token; 4xx is not."""
    proxy_mod = pytest.importorskip("controller.emulator.proxy")
    aws.seed_function("fn-faults", versions=1)
    aws.client("lambda").create_alias(FunctionName="fn-faults", Name="live", FunctionVersion="1")
    rule = proxy_mod.FaultRule
    proxy = proxy_mod.FaultProxy.start(
        aws.url,
        rules=[
            rule(action="throttle", service="lambda", operation="GetAlias", count=2),
            rule(action="error", service="lambda", operation="GetAlias", count=1, status=500),
            rule(action="drop", service="lambda", operation="GetAlias", count=1),
        ],
    )
    budget = CountingBudget(FAST)
    try:
        clients = make_clients(
            AwsSettings(endpoint_url=proxy.url, region="us-east-1", max_attempts=5), budget=budget, observer=observer
        )
        with caplog.at_level("WARNING", logger="controller.aws"):
            state = run(clients.lambda_.get_alias("fn-faults", "live"))
            assert state is not None and state.routing.primary == "1"
            # Another family's first fault is said too; a missing alias (404) is an answer, not retried.
            assert run(clients.lambda_.get_alias("fn-faults", "missing")) is None
        # Two throttles, a 500 and a dropped connection, then the answer: five attempts, five tokens.
        assert observer.ops("GetAlias") == ["throttled", "throttled", "error", "error", "ok", "not_found"]
        assert [reason for _, reason in observer.retries] == ["throttled", "throttled", "server_error", "connection"]
        assert budget.taken["lambda"] == 6
        # One WARNING for the four faults, not one per fault: the first is said, then once per 30 s.
        warnings = [r for r in caplog.records if r.levelname == "WARNING" and "AWS is slowing down" in r.getMessage()]
        assert len(warnings) == 1
        assert "lambda calls: 1 throttled so far (all retried)" in warnings[0].getMessage()
    finally:
        proxy.stop()


# ---- the IAM policy covers what the adapters call -------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
_IAM_PREFIX = {
    "lambda_.py": "lambda",
    "cloudwatch.py": "cloudwatch",
    "tagging.py": "tag",
    "events.py": "events",
    "sqs.py": "sqs",
    "dynamodb.py": "dynamodb",
    "sns.py": "sns",
    "sts.py": "sts",
}
# AWS allows these whatever the policy says.
_ALWAYS_ALLOWED = {"sts:GetCallerIdentity"}
# IAM authorizes a batch delete as the single-message action.
_IAM_RENAMES = {"lambda:Invoke": "lambda:InvokeFunction", "sqs:DeleteMessageBatch": "sqs:DeleteMessage"}


def _allowed_actions(policy: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return actions


def test_iam_policy_covers_every_adapter_call_and_matches_the_docs() -> None:
    policy = json.loads((REPO / "manifests" / "iam-policy.json").read_text())
    doc = (REPO / "docs" / "iam.md").read_text()
    first_block = re.search(r"```json\n(.*?)\n```", doc, re.DOTALL)
    assert first_block is not None
    assert json.loads(first_block.group(1)) == policy, "docs/iam.md and manifests/iam-policy.json differ"
    allowed = _allowed_actions(policy)
    used: set[str] = set()
    for module, prefix in _IAM_PREFIX.items():
        source = (REPO / "controller" / "aws" / module).read_text()
        operations = re.findall(r'call\(\s*"([A-Za-z]+)"', source)
        assert operations, module
        used.update(f"{prefix}:{op}" for op in operations)
    # The Lambda API names its tag listing "ListTags" and IAM calls it the same; Invoke and
    # DeleteMessageBatch are the renames.
    used = {_IAM_RENAMES.get(action, action) for action in used} - _ALWAYS_ALLOWED
    assert used <= allowed, f"not allowed by the policy: {sorted(used - allowed)}"
    # Least privilege: nothing allowed that no adapter calls, except GetMetricData (metric analysis).
    assert allowed - used <= {"cloudwatch:GetMetricData"}
    assert all("*" not in action for action in allowed)


# ---- session and error mapping -----------------------------------------------------------------------------------


def test_endpoint_from_environment_and_local_region_default(
    aws: Emulator, monkeypatch: pytest.MonkeyPatch, observer: Recorder
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.url)
    local = make_clients(AwsSettings(), budget=Budget(FAST), observer=observer)
    assert local.region == "us-east-1"
    assert local.endpoint_url == aws.url
    aws.seed_function("fn-env", versions=1)
    assert run(local.lambda_.get_function("fn-env")) is not None  # dummy credentials were used

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with pytest.raises(AwsError) as no_region:
        make_clients(AwsSettings())
    assert no_region.value.code == "NoRegion"
    assert make_clients(AwsSettings(region="eu-west-1")).region == "eu-west-1"


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "why"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("code", "status", "kind", "outcome"),
    [
        ("ResourceNotFoundException", 404, NotFound, "not_found"),
        ("PreconditionFailedException", 412, Conflict, "conflict"),
        ("ResourceConflictException", 409, Conflict, "conflict"),
        ("TooManyRequestsException", 429, Throttled, "throttled"),
        ("Throttling", 400, Throttled, "throttled"),
        ("ThrottlingException", 400, Throttled, "throttled"),
        ("InvalidParameterValueException", 400, InvalidRequest, "error"),
        ("ValidationError", 400, InvalidRequest, "error"),
        ("ServiceException", 500, AwsError, "error"),
        ("", 404, NotFound, "not_found"),
    ],
)
def test_error_mapping(code: str, status: int, kind: type[AwsError], outcome: str) -> None:
    error = from_boto(_client_error(code, status), operation="UpdateAlias")
    assert type(error) is kind
    assert error.outcome == outcome
    assert error.operation == "UpdateAlias"
    assert error.message == "why"
    assert "UpdateAlias" in str(error)


def test_non_client_errors_keep_their_name() -> None:
    error = from_boto(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), operation="GetAlias")
    assert type(error) is AwsError
    assert error.code == "EndpointConnectionError"
