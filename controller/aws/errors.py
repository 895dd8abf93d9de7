"""The few AWS failures the engine reacts to differently, as exceptions that do not leak botocore.

The engine must tell "it is not there" (a clear error on the rollout), "someone else wrote first"
(re-read and decide again, never clobber), "AWS is throttling us" (back off this rollout alone) and
"the request is wrong" (report, do not retry) apart. botocore expresses these as ``ClientError``
codes that differ between services; ``from_boto`` maps them once, here, and keeps AWS's message so
the rollout's status can show it verbatim.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["AwsError", "Conflict", "InvalidRequest", "NotFound", "Throttled", "from_boto"]


class AwsError(Exception):
    """Any failed AWS call. ``code`` is AWS's error code (or the botocore exception's name)."""

    #: How the call is reported to the ``ApiObserver`` (metrics label).
    outcome: ClassVar[str] = "error"

    def __init__(self, *, code: str, message: str, operation: str) -> None:
        super().__init__(f"{operation}: {code}: {message}" if message else f"{operation}: {code}")
        self.code = code
        self.message = message
        self.operation = operation
        # Why the failure was transient (a ``retries`` reason: throttled, server_error, connection)
        # when the caller's retries ran out on it; None when retrying could not help. The engine
        # retries a reconcile that failed transiently sooner than one that failed for good reason.
        self.transient: str | None = None


class NotFound(AwsError):
    """The function, version, alias or resource does not exist (ResourceNotFoundException, HTTP 404)."""

    outcome = "not_found"


class Conflict(AwsError):
    """Someone else changed it first: stale RevisionId (PreconditionFailedException), ResourceConflictException,
    a DynamoDB condition that no longer holds (ConditionalCheckFailedException)."""

    outcome = "conflict"


class Throttled(AwsError):
    """AWS still throttled the call after botocore's own retries (TooManyRequestsException, Throttling...)."""

    outcome = "throttled"


class InvalidRequest(AwsError):
    """AWS refused the request itself (InvalidParameterValueException, ValidationError...); retrying will not help."""


_NOT_FOUND = {
    "ResourceNotFoundException",
    "ResourceNotFound",
    "NotFound",
    "NoSuchEntity",
    # SQS: the JSON protocol's code and the query protocol's name for a missing queue.
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "404",
}
_CONFLICT = {
    "PreconditionFailedException",
    "ResourceConflictException",
    "ConflictException",
    "ConcurrentModificationException",
    "ConditionalCheckFailedException",  # DynamoDB: the condition of a conditional write failed
    # SQS CreateQueue: a queue of that name exists with other attributes.
    "QueueAlreadyExists",
    "QueueNameExists",
    "412",
}
_THROTTLED = {
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "429",
}
_INVALID = {
    "InvalidParameterValueException",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "InvalidParameterException",
    "InvalidRequestContentException",
    "InvalidParameter",
    "ValidationError",
    "ValidationException",
    "MissingParameter",
    "InvalidNextToken",
    "InvalidPaginationTokenException",
    "PaginationTokenExpiredException",
    "InvalidEventPatternException",
    "InvalidAttributeName",
    "InvalidAttributeValue",
}


def from_boto(exc: BaseException, *, operation: str) -> AwsError:
    """Map a botocore exception to one of ours (anything unknown becomes a plain ``AwsError``)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or "")
        status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if not code:
            code = str(status or "Unknown")
        if not message:
            message = str(exc)
        if code in _THROTTLED or status == 429:
            return Throttled(code=code, message=message, operation=operation)
        if code in _NOT_FOUND or status == 404:
            return NotFound(code=code, message=message, operation=operation)
        if code in _CONFLICT or status == 412:
            return Conflict(code=code, message=message, operation=operation)
        if code in _INVALID:
            return InvalidRequest(code=code, message=message, operation=operation)
        return AwsError(code=code, message=message, operation=operation)
    # Not a ClientError: connection refused, timeouts, missing credentials, bad parameters caught
    # by botocore before sending (ParamValidationError is a wrong request, not a transient fault).
    name = type(exc).__name__
    if name == "ParamValidationError":
        return InvalidRequest(code=name, message=str(exc), operation=operation)
    return AwsError(code=name, message=str(exc), operation=operation)
