"""Errors every layer may raise and the command line maps to exit codes.

They live in a module with no imports of its own, so ``controller.cli`` can catch them without
loading the AWS or Kubernetes layers that raise them (``lambda-rollouts --help`` stays instant).
"""

from __future__ import annotations


class UsageError(Exception):
    """A command-line problem found after parsing (a bad config file): exit 2 with this text."""


# AWS error codes (``AwsError.code``, or a botocore exception's class name) that mean the same to a
# person, and what to do about them. Looked up by name so that this module imports nothing.
_NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"})
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyConnectionError",
    }
)
_REFUSED_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "AuthFailure",
    }
)
_DENIED = frozenset({"AccessDenied", "AccessDeniedException"})


def describe_failure(error: BaseException) -> str:
    """One line for a person: what failed and what to do, never a traceback."""
    code = str(getattr(error, "code", "") or type(error).__name__)
    if code in _NO_CREDENTIALS:
        return (
            "no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run "
            "where an instance or pod role is available (a local emulator via --aws-endpoint-url needs none)"
        )
    if code == "NoRegion":
        return str(getattr(error, "message", "") or error)
    if code in _UNREACHABLE:
        detail = getattr(error, "message", "") or error
        return f"cannot reach AWS: {detail}; check --aws-endpoint-url, --region and the network"
    if code in _REFUSED_CREDENTIALS:
        return f"AWS refused the credentials ({code}): refresh them (a new session, `aws sso login`)"
    if code in _DENIED:
        operation = getattr(error, "operation", "") or "the call"
        return f"AWS denied {operation}: {getattr(error, 'message', '') or error} (the IAM policies: docs/iam.md)"
    text = str(error) or type(error).__name__
    if type(error).__module__.startswith("controller."):
        return text  # our own errors say what they mean
    return text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}"
