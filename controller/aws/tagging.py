"""Finding every managed function in one paginated call (Resource Groups Tagging API).

The durable records live in the functions' tags, and every managed function carries the marker tag
``lambda-rollouts/managed``. ``GetResources`` filtered on that key returns each such function with ALL
its tags, so start-up, ``get`` and the control verbs list every rollout and its record without one
Lambda call per function.
"""

from __future__ import annotations

from typing import Any

from controller.aws.calls import ApiCaller

__all__ = ["FAMILY", "TaggingAdapter"]

FAMILY = "tagging"
PAGE_SIZE = 100


class TaggingAdapter:
    """Async GetResources for Lambda functions."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def functions_with_tag(self, key: str) -> dict[str, dict[str, str]]:
        """``{function_arn: all its tags}`` for every function that has a tag ``key`` (any value)."""
        out: dict[str, dict[str, str]] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {
                "ResourceTypeFilters": ["lambda:function"],
                "TagFilters": [{"Key": key}],
                # AWS's largest page: 1,000 managed functions are read in ten calls.
                "ResourcesPerPage": PAGE_SIZE,
            }
            if token:
                params["PaginationToken"] = token
            response = await self._caller.call("GetResources", family=FAMILY, **params)
            for item in response.get("ResourceTagMappingList") or []:
                tags = {str(t["Key"]): str(t.get("Value", "")) for t in item.get("Tags") or []}
                out[str(item["ResourceARN"])] = tags
            # The API signals the last page with an empty string, not a missing token.
            token = response.get("PaginationToken")
            if not token:
                return out
