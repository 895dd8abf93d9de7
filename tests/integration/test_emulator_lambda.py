"""The strict emulator refuses what AWS Lambda refuses, with the same error codes."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.emulator import Emulator


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def lam(aws: Emulator) -> Any:
    return aws.client("lambda")


@pytest.fixture
def fn(aws: Emulator) -> str:
    aws.seed_function("svc", versions=3)
    return "svc"


# ----- RevisionId -----


def test_alias_revision_changes_and_stale_update_is_refused(lam: Any, fn: str) -> None:
    created = lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    updated = lam.update_alias(FunctionName=fn, Name="prod", FunctionVersion="2", RevisionId=created["RevisionId"])
    assert updated["RevisionId"] != created["RevisionId"]
    assert lam.get_alias(FunctionName=fn, Name="prod")["RevisionId"] == updated["RevisionId"]
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_alias(FunctionName=fn, Name="prod", FunctionVersion="3", RevisionId=created["RevisionId"])
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert lam.get_alias(FunctionName=fn, Name="prod")["FunctionVersion"] == "2"


def test_function_revision_changes_on_update_and_publish_not_on_tags(lam: Any, fn: str) -> None:
    first = lam.get_function(FunctionName=fn)["Configuration"]["RevisionId"]
    lam.tag_resource(Resource=lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"], Tags={"a": "b"})
    assert lam.get_function(FunctionName=fn)["Configuration"]["RevisionId"] == first
    second = lam.update_function_configuration(FunctionName=fn, Description="changed", RevisionId=first)["RevisionId"]
    assert second != first
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_configuration(FunctionName=fn, Description="again", RevisionId=first)
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_code(FunctionName=fn, ZipFile=b"PK", RevisionId=first)
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName=fn, RevisionId=first)
    published = lam.publish_version(FunctionName=fn, RevisionId=second)
    assert published["Version"] == "4"
    assert lam.get_function(FunctionName=fn)["Configuration"]["RevisionId"] != second


def test_publish_with_wrong_code_sha_is_refused(lam: Any, fn: str) -> None:
    lam.update_function_configuration(FunctionName=fn, Description="new")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.publish_version(FunctionName=fn, CodeSha256="0" * 64)
    sha = lam.get_function(FunctionName=fn)["Configuration"]["CodeSha256"]
    assert lam.publish_version(FunctionName=fn, CodeSha256=sha)["Version"] == "4"


# ----- routing rules -----


@pytest.mark.parametrize(
    ("primary", "weights", "code"),
    [
        ("1", {"2": 1.5}, "ValidationException"),
        ("1", {"2": 0.1, "3": 0.1}, "InvalidParameterValueException"),
        ("1", {"$LATEST": 0.1}, "InvalidParameterValueException"),
        ("$LATEST", {"2": 0.1}, "InvalidParameterValueException"),
        ("1", {"1": 0.1}, "InvalidParameterValueException"),
        ("1", {"9": 0.1}, "InvalidParameterValueException"),
        ("9", {}, "ResourceNotFoundException"),
    ],
)
def test_invalid_routing_is_refused_on_create(
    lam: Any, fn: str, primary: str, weights: dict[str, float], code: str
) -> None:
    with pytest.raises(ClientError) as exc:
        lam.create_alias(
            FunctionName=fn, Name="prod", FunctionVersion=primary, RoutingConfig={"AdditionalVersionWeights": weights}
        )
    assert _code(exc) == code


def test_invalid_routing_is_refused_on_update_and_valid_is_kept(lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_alias(FunctionName=fn, Name="prod", RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    ok = lam.update_alias(FunctionName=fn, Name="prod", RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    assert ok["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.25}
    # Moving the primary onto the version already in the routing config is refused too.
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.update_alias(FunctionName=fn, Name="prod", FunctionVersion="2")
    assert "already included in routing configuration" in exc.value.response["Error"]["Message"]
    cleared = lam.update_alias(
        FunctionName=fn, Name="prod", FunctionVersion="2", RoutingConfig={"AdditionalVersionWeights": {}}
    )
    assert not (cleared.get("RoutingConfig") or {}).get("AdditionalVersionWeights")


def test_routing_needs_same_role_and_dead_letter_config(aws: Emulator, lam: Any, fn: str) -> None:
    other_role = aws.ensure_role("another-role")
    lam.update_function_configuration(FunctionName=fn, Role=other_role)
    v4 = lam.publish_version(FunctionName=fn)["Version"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.create_alias(
            FunctionName=fn, Name="prod", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {v4: 0.1}}
        )
    assert "execution role" in exc.value.response["Error"]["Message"]
    lam.update_function_configuration(
        FunctionName=fn,
        Role=aws.ensure_role(),
        DeadLetterConfig={"TargetArn": "arn:aws:sqs:us-east-1:123456789012:dlq"},
    )
    v5 = lam.publish_version(FunctionName=fn)["Version"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.create_alias(
            FunctionName=fn, Name="prod", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {v5: 0.1}}
        )
    assert "dead letter" in exc.value.response["Error"]["Message"]


# ----- provisioned and reserved concurrency -----


def test_provisioned_concurrency_goes_in_progress_then_ready(aws: Emulator, lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="2")
    put = lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=10)
    assert put["Status"] == "IN_PROGRESS"
    assert put["RequestedProvisionedConcurrentExecutions"] == 10
    ready = aws.wait_for(
        lambda: (
            (c := lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod"))["Status"] == "READY" and c
        ),
        timeout=5,
    )
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 10
    listed = lam.list_provisioned_concurrency_configs(FunctionName=fn)["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["prod"]
    lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod")
    with pytest.raises(lam.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod")


def test_provisioned_concurrency_rules(lam: Any, fn: str) -> None:
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="9", ProvisionedConcurrentExecutions=1)
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="2")
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="2", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=1)
    lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier="2")
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="2", ProvisionedConcurrentExecutions=1)


def test_provisioned_concurrency_refused_on_weighted_alias(lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=2)
    lam.update_alias(FunctionName=fn, Name="prod", RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=3)
    assert "Alias with weights" in exc.value.response["Error"]["Message"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.delete_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod")


def test_alias_moving_version_reallocates_provisioned_concurrency(aws: Emulator, lam: Any, fn: str) -> None:
    aws.configure(provisioned_concurrency_delay=0.05)
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod", ProvisionedConcurrentExecutions=2)
    aws.wait_for(lambda: lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod")["Status"] == "READY")
    aws.configure(provisioned_concurrency_delay=30)
    lam.update_alias(FunctionName=fn, Name="prod", FunctionVersion="2")
    assert lam.get_provisioned_concurrency_config(FunctionName=fn, Qualifier="prod")["Status"] == "IN_PROGRESS"


def test_reserved_concurrency(lam: Any, fn: str) -> None:
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=fn)
    assert (
        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=50)["ReservedConcurrentExecutions"]
        == 50
    )
    assert lam.get_function_concurrency(FunctionName=fn)["ReservedConcurrentExecutions"] == 50
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_function_concurrency(FunctionName=fn, ReservedConcurrentExecutions=950)
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.put_provisioned_concurrency_config(FunctionName=fn, Qualifier="1", ProvisionedConcurrentExecutions=60)
    lam.delete_function_concurrency(FunctionName=fn)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=fn)


# ----- event invoke config -----


def test_event_invoke_config_per_qualifier(lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    queue = "arn:aws:sqs:us-east-1:123456789012:failures"
    put = lam.put_function_event_invoke_config(
        FunctionName=fn,
        Qualifier="prod",
        MaximumRetryAttempts=1,
        MaximumEventAgeInSeconds=3600,
        DestinationConfig={"OnFailure": {"Destination": queue}},
    )
    assert put["FunctionArn"].endswith(":svc:prod")
    updated = lam.update_function_event_invoke_config(FunctionName=fn, Qualifier="prod", MaximumRetryAttempts=0)
    assert updated["MaximumRetryAttempts"] == 0
    assert updated["MaximumEventAgeInSeconds"] == 3600
    assert updated["DestinationConfig"]["OnFailure"]["Destination"] == queue
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="1")
    assert len(lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]) == 1
    lam.delete_function_event_invoke_config(FunctionName=fn, Qualifier="prod")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="prod")


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"MaximumRetryAttempts": 3}, "ValidationException"),
        ({"MaximumEventAgeInSeconds": 21601}, "ValidationException"),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": "arn:aws:dynamodb:us-east-1:123456789012:table/t"}}},
            "InvalidParameterValueException",
        ),
    ],
)
def test_event_invoke_config_validation(lam: Any, fn: str, kwargs: dict[str, Any], code: str) -> None:
    with pytest.raises(ClientError) as exc:
        lam.put_function_event_invoke_config(FunctionName=fn, Qualifier="1", **kwargs)
    assert _code(exc) == code


# ----- tags -----


@pytest.mark.parametrize(
    "tags",
    [
        {"k" * 129: "v"},
        {"k": "v" * 257},
        {"aws:reserved": "v"},
        {"record": '{"json": "braces"}'},
        {f"k{i}": "v" for i in range(51)},
    ],
)
def test_tag_limits(lam: Any, fn: str, tags: dict[str, str]) -> None:
    arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.tag_resource(Resource=arn, Tags=tags)


def test_tags_allowed_characters_and_list_tags(lam: Any, fn: str) -> None:
    arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    tags = {"rollout/state": "v1 phase=Progressing w:0.1 @x +y_z-", "ünïcode": "wert"}
    lam.tag_resource(Resource=arn, Tags=tags)
    assert lam.list_tags(Resource=arn)["Tags"] == tags
    lam.tag_resource(Resource=arn, Tags={f"k{i}": "v" for i in range(48)})
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.tag_resource(Resource=arn, Tags={"one-too-many": "v"})


def test_invoke_echoes_without_docker(lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    out = lam.invoke(FunctionName=fn, Qualifier="prod", Payload=b'{"hello": 1}')
    assert out["Payload"].read() == b'{"hello": 1}'


# ----- listing: paging and missing functions -----


def _unvalidated(aws: Emulator) -> Any:
    """A client that sends out-of-range values so the emulator (like AWS) must refuse them."""
    from botocore.config import Config

    return aws.client("lambda", config=Config(parameter_validation=False))


def test_list_versions_pages_with_marker_and_caps_at_50(aws: Emulator, lam: Any) -> None:
    aws.seed_function("many", versions=55)
    first = lam.list_versions_by_function(FunctionName="many", MaxItems=2)
    assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1"]
    assert first["Versions"][0]["FunctionArn"].endswith(":many:$LATEST")
    second = lam.list_versions_by_function(FunctionName="many", MaxItems=2, Marker=first["NextMarker"])
    assert [v["Version"] for v in second["Versions"]] == ["2", "3"]
    # More than 50 asked for (or nothing asked): 50 per page, as AWS.
    assert len(lam.list_versions_by_function(FunctionName="many", MaxItems=1000)["Versions"]) == 50
    default = lam.list_versions_by_function(FunctionName="many")
    assert len(default["Versions"]) == 50 and default["NextMarker"]
    rest = lam.list_versions_by_function(FunctionName="many", Marker=default["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == [str(n) for n in range(50, 56)]
    assert "NextMarker" not in rest
    pages = list(
        lam.get_paginator("list_versions_by_function").paginate(FunctionName="many", PaginationConfig={"PageSize": 7})
    )
    versions = [v["Version"] for page in pages for v in page["Versions"]]
    assert len(pages) == 8 and versions == ["$LATEST", *[str(n) for n in range(1, 56)]]


def test_list_versions_and_aliases_of_a_missing_function_are_404(lam: Any) -> None:
    for call in (lam.list_versions_by_function, lam.list_aliases):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
            call(FunctionName="nope")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_list_max_items_out_of_range_is_a_validation_error(aws: Emulator, fn: str) -> None:
    raw = _unvalidated(aws)
    for call in (raw.list_versions_by_function, raw.list_aliases):
        for bad in (0, 10001):
            with pytest.raises(ClientError) as exc:
                call(FunctionName=fn, MaxItems=bad)
            assert _code(exc) == "ValidationException"
            assert "maxItems" in exc.value.response["Error"]["Message"]


def test_list_aliases_pages_and_filters_by_version(lam: Any, fn: str) -> None:
    for index, name in enumerate(["a", "b", "c", "d", "e"]):
        lam.create_alias(FunctionName=fn, Name=name, FunctionVersion=str(index % 2 + 1))
    first = lam.list_aliases(FunctionName=fn, MaxItems=2)
    assert [a["Name"] for a in first["Aliases"]] == ["a", "b"]
    second = lam.list_aliases(FunctionName=fn, MaxItems=2, Marker=first["NextMarker"])
    assert [a["Name"] for a in second["Aliases"]] == ["c", "d"]
    last = lam.list_aliases(FunctionName=fn, MaxItems=2, Marker=second["NextMarker"])
    assert [a["Name"] for a in last["Aliases"]] == ["e"] and "NextMarker" not in last
    pages = lam.get_paginator("list_aliases").paginate(FunctionName=fn, PaginationConfig={"PageSize": 2})
    assert [a["Name"] for page in pages for a in page["Aliases"]] == ["a", "b", "c", "d", "e"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=fn, FunctionVersion="2")["Aliases"]] == ["b", "d"]
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.list_aliases(FunctionName=fn, Marker="not-a-marker")


def test_duplicate_alias_is_resource_conflict(lam: Any, fn: str) -> None:
    lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        lam.create_alias(FunctionName=fn, Name="prod", FunctionVersion="2")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    assert exc.value.response["Error"]["Message"] == f"Alias already exists: {arn}:prod"
    assert lam.get_alias(FunctionName=fn, Name="prod")["FunctionVersion"] == "1"
