"""A Resource Groups Tagging ``GetResources`` that pages like AWS.

The controller lists every managed function with its durable record through one paginated
``GetResources`` scan, so the page size decides what a start-up and a ``get`` cost. moto 5.2 pages,
but not as AWS does: a page also ends one resource early when the next one would exactly fill
``TagsPerPage`` (AWS's own example: 100 tags per page, 10 tags per resource, 10 resources per page),
that tag limit applies even when the caller never set it, its tokens are live generators over the
backends (a function created or deleted between two pages can break the next one, and a token never
expires), and combining ``ResourceARNList`` with filters or paging is accepted. This module replaces
the handler:

* resources come in ARN order, at most ``ResourcesPerPage`` (1-100, default :data:`DEFAULT_PAGE`) a page,
  and, only when the caller gives ``TagsPerPage`` (100-500), no more tags than that (a resource without
  tags counts as one; a resource is never split across pages);
* the token names the last ARN returned, so resources created or deleted between pages neither
  repeat nor shift the rest, and it expires after 15 minutes (``PaginationTokenExpiredException``);
* out-of-range values, a token the emulator did not issue, and ``ResourceARNList`` together with
  ``TagFilters``, ``ResourceTypeFilters`` or a paging parameter are ``InvalidParameterException``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from moto.core.resource_tagging import TaggedResource
from moto.core.responses import ActionResult
from moto.resourcegroupstaggingapi.exceptions import ResourceGroupsTaggingAPIError
from moto.resourcegroupstaggingapi.responses import ResourceGroupsTaggingAPIResponse

#: Resources per page when ``ResourcesPerPage`` is absent. AWS documents the range (1-100) but not
#: the default; pages of up to 100 are what callers see, so a caller that pages correctly is right.
DEFAULT_PAGE = 100
RESOURCES_PER_PAGE = (1, 100)
TAGS_PER_PAGE = (100, 500)
#: "A PaginationToken is valid for a maximum of 15 minutes."
TOKEN_LIFETIME_SECONDS = 15 * 60


def _invalid(message: str) -> ResourceGroupsTaggingAPIError:
    return ResourceGroupsTaggingAPIError("InvalidParameterException", message)


def _ranged(value: Any, name: str, bounds: tuple[int, int]) -> int | None:
    if value is None:
        return None
    low, high = bounds
    number = int(value)
    if not low <= number <= high:
        raise _invalid(f"{name} must be between {low} and {high}")
    return number


def encode_token(after: str, *, issued: float) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after, "issued": issued}).encode()).decode()


def decode_token(token: str, *, now: float) -> str:
    """The last ARN of the previous page; AWS's errors for a foreign or an expired token."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        after, issued = str(data["after"]), float(data["issued"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _invalid("The specified PaginationToken is not valid") from exc
    if now - issued > TOKEN_LIFETIME_SECONDS:
        raise ResourceGroupsTaggingAPIError(
            "PaginationTokenExpiredException", "The PaginationToken has expired; start again without it"
        )
    return after


def page(
    resources: list[TaggedResource], *, after: str | None, per_page: int, tags_per_page: int | None
) -> tuple[list[TaggedResource], bool]:
    """One page of ``resources`` (sorted by ARN) after ``after``; True when more remain."""
    remaining = [r for r in resources if after is None or r.arn > after]
    taken: list[TaggedResource] = []
    tags = 0
    for resource in remaining:
        weight = max(len(resource.tags), 1)
        if len(taken) == per_page or (tags_per_page is not None and taken and tags + weight > tags_per_page):
            break
        taken.append(resource)
        tags += weight
    return taken, len(taken) < len(remaining)


def get_resources(self: ResourceGroupsTaggingAPIResponse) -> ActionResult:
    """GetResources: moto's filters, AWS's paging and parameter rules."""
    token = self._get_param("PaginationToken") or None
    tag_filters = self._get_param("TagFilters", []) or []
    type_filters = self._get_param("ResourceTypeFilters", []) or []
    arns = self._get_param("ResourceARNList", []) or []
    per_page_raw = self._get_param("ResourcesPerPage")
    tags_raw = self._get_param("TagsPerPage")
    if arns and (tag_filters or type_filters):
        raise _invalid("ResourceARNList cannot be combined with TagFilters or ResourceTypeFilters")
    if arns and (token or per_page_raw is not None or tags_raw is not None):
        raise _invalid("ResourceARNList cannot be combined with ResourcesPerPage, TagsPerPage or PaginationToken")
    per_page = _ranged(per_page_raw, "ResourcesPerPage", RESOURCES_PER_PAGE) or DEFAULT_PAGE
    tags_per_page = _ranged(tags_raw, "TagsPerPage", TAGS_PER_PAGE)
    now = time.time()
    after = decode_token(token, now=now) if token else None
    resources = sorted(
        self.backend._get_resources_generator(
            tag_filters=tag_filters, resource_type_filters=type_filters, resource_arn_list=arns
        ),
        key=lambda resource: resource.arn,
    )
    taken, more = page(resources, after=after, per_page=per_page, tags_per_page=tags_per_page)
    return ActionResult(
        {
            "ResourceTagMappingList": [
                {"ResourceARN": r.arn, "Tags": [{"Key": k, "Value": v} for k, v in r.tags.items()]} for r in taken
            ],
            # The last page carries an empty token, as AWS's does.
            "PaginationToken": encode_token(taken[-1].arn, issued=now) if more and taken else "",
        }
    )


def install() -> None:
    """Install the handler on moto's Tagging API responses (idempotent)."""
    ResourceGroupsTaggingAPIResponse.get_resources = get_resources  # type: ignore[method-assign]
