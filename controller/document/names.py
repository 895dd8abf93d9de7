"""How a document names a Lambda function, and what ``$LATEST`` is: one rule for every layer.

``spec.functionName`` is a name or a full ARN (``arn:aws:lambda:REGION:ACCOUNT:function:NAME``,
possibly with a ``:QUALIFIER``); the tag APIs, the durable record and the ownership rules need the
bare name, the tag APIs the unqualified ARN. ``$LATEST`` is the unpublished code: never an alias's
target for weighted routing, never a version the controller rolls out.
"""

from __future__ import annotations

LATEST = "$LATEST"

# arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
_NAME_FIELD = 6
_UNQUALIFIED_FIELDS = 7


def is_arn(function: str) -> bool:
    return function.startswith("arn:")


def function_name_of(name_or_arn: str) -> str:
    """The bare function name, whether given as a name or as a (possibly qualified) ARN."""
    if is_arn(name_or_arn):
        return name_or_arn.split(":")[_NAME_FIELD]
    return name_or_arn


def unqualified_arn(arn: str) -> str:
    """The function's ARN without a version or alias qualifier (what the tag APIs take)."""
    return ":".join(arn.split(":")[:_UNQUALIFIED_FIELDS])


def same_function(first: str, second: str) -> bool:
    """Whether two ``functionName`` values name the same function.

    Two ARNs are the same function only if they are equal once unqualified (same account and
    region); a bare name may be either of them.
    """
    if is_arn(first) and is_arn(second):
        return unqualified_arn(first) == unqualified_arn(second)
    return function_name_of(first) == function_name_of(second)


__all__ = ["LATEST", "function_name_of", "is_arn", "same_function", "unqualified_arn"]
