"""GetResources pages like AWS: page sizes, tokens that survive changes between pages, AWS's errors."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from controller.emulator import Emulator

KEY = "lambda-rollouts/managed"


@pytest.fixture
def tagging(aws: Emulator) -> Any:
    return aws.client("resourcegroupstaggingapi")


def seed(aws: Emulator, count: int, *, prefix: str = "fn", tags: int = 1) -> None:
    for index in range(count):
        extra = {f"t{i}": "x" for i in range(tags - 1)}
        aws.seed_function(f"{prefix}-{index:03d}", versions=0, tags={KEY: "yes", **extra})


def names(page: dict[str, Any]) -> list[str]:
    return [item["ResourceARN"].rsplit(":", 1)[1] for item in page["ResourceTagMappingList"]]


def everything(tagging: Any, **params: Any) -> list[list[str]]:
    pages = tagging.get_paginator("get_resources").paginate(**params)
    return [names(page) for page in pages]


def test_pages_of_at_most_100_in_arn_order_with_all_tags(aws: Emulator, tagging: Any) -> None:
    seed(aws, 230)
    aws.seed_function("untagged", versions=0)
    pages = everything(tagging, TagFilters=[{"Key": KEY}], ResourceTypeFilters=["lambda:function"])
    assert [len(p) for p in pages] == [100, 100, 30]
    assert [name for p in pages for name in p] == [f"fn-{i:03d}" for i in range(230)]
    first = tagging.get_resources(TagFilters=[{"Key": KEY}])
    assert first["ResourceTagMappingList"][0]["Tags"] == [{"Key": KEY, "Value": "yes"}]
    assert first["PaginationToken"]


def test_resources_per_page_and_the_empty_token_of_the_last_page(aws: Emulator, tagging: Any) -> None:
    seed(aws, 7)
    assert [len(p) for p in everything(tagging, ResourcesPerPage=3)] == [3, 3, 1]
    whole = tagging.get_resources(ResourcesPerPage=7)
    assert len(whole["ResourceTagMappingList"]) == 7 and whole["PaginationToken"] == ""


def test_tags_per_page_never_splits_a_resource(aws: Emulator, tagging: Any) -> None:
    # AWS's example: TagsPerPage 100 over 22 resources of 10 tags each gives pages of 10, 10 and 2.
    seed(aws, 22, tags=10)
    assert [len(p) for p in everything(tagging, TagsPerPage=100)] == [10, 10, 2]
    # Without TagsPerPage only the resource count limits a page.
    assert [len(p) for p in everything(tagging)] == [22]


def test_a_token_survives_functions_created_and_deleted_between_pages(aws: Emulator, tagging: Any) -> None:
    seed(aws, 6)
    first = tagging.get_resources(ResourcesPerPage=3)
    assert names(first) == ["fn-000", "fn-001", "fn-002"]
    lam = aws.client("lambda")
    lam.delete_function(FunctionName="fn-003")
    lam.delete_function(FunctionName="fn-001")  # already returned: changes nothing after the token
    aws.seed_function("fn-0025", versions=0, tags={KEY: "yes"})  # sorts after fn-002: next page
    second = tagging.get_resources(ResourcesPerPage=3, PaginationToken=first["PaginationToken"])
    assert names(second) == ["fn-0025", "fn-004", "fn-005"]


def test_bad_values_are_refused_as_aws_refuses_them(aws: Emulator, tagging: Any) -> None:
    seed(aws, 2)
    for params in ({"ResourcesPerPage": 0}, {"ResourcesPerPage": 101}, {"TagsPerPage": 99}, {"TagsPerPage": 501}):
        with pytest.raises(ClientError) as exc:
            tagging.get_resources(**params)
        assert exc.value.response["Error"]["Code"] == "InvalidParameterException", params
        assert next(iter(params)) in exc.value.response["Error"]["Message"]
    arn = "arn:aws:lambda:us-east-1:123456789012:function:fn-000"
    for params in (
        {"TagFilters": [{"Key": KEY}]},
        {"ResourceTypeFilters": ["lambda:function"]},
        {"ResourcesPerPage": 10},
        {"PaginationToken": "x"},
    ):
        with pytest.raises(ClientError) as exc:
            tagging.get_resources(ResourceARNList=[arn], **params)
        assert exc.value.response["Error"]["Code"] == "InvalidParameterException", params
    assert names(tagging.get_resources(ResourceARNList=[arn])) == ["fn-000"]
    with pytest.raises(ClientError) as exc:
        tagging.get_resources(PaginationToken="not-a-token")
    assert exc.value.response["Error"]["Code"] == "InvalidParameterException"


def test_a_token_expires_after_15_minutes(aws: Emulator, tagging: Any) -> None:
    seed(aws, 3)
    token = tagging.get_resources(ResourcesPerPage=1)["PaginationToken"]
    after = json.loads(base64.urlsafe_b64decode(token))["after"]
    # The same token as the emulator would have issued 16 minutes ago (its format is the emulator's own).
    stale = base64.urlsafe_b64encode(json.dumps({"after": after, "issued": time.time() - 16 * 60}).encode()).decode()
    with pytest.raises(ClientError) as exc:
        tagging.get_resources(ResourcesPerPage=1, PaginationToken=stale)
    assert exc.value.response["Error"]["Code"] == "PaginationTokenExpiredException"
