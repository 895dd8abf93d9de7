"""Recognise which AWS operation an HTTP request is, and build AWS-shaped error responses.

Shared by the emulator's call log and by the fault-injection proxy: both sit in front of moto
and only see raw HTTP, so they must derive "service + operation + key parameters" the way AWS
would (Lambda is REST-JSON routed by method and path, CloudWatch in botocore 1.44 is awsJson1_0
with an ``X-Amz-Target`` header, older clients send query-protocol ``Action=`` forms).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

#: Signing names (from the SigV4 credential scope) to the service names we report.
_SIGNING_TO_SERVICE = {"monitoring": "cloudwatch", "execute-api": "apigateway"}
#: X-Amz-Target prefixes of JSON-protocol services we care about.
_TARGET_PREFIX_TO_SERVICE = {
    "GraniteServiceVersion20100801": "cloudwatch",
    "AWSEvents": "events",
    "AmazonSQS": "sqs",
    "Logs_20140328": "logs",
}
_CREDENTIAL_RE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
#: Request parameters worth recording: they say *what* a call touched.
KEY_PARAMS = (
    "FunctionName",
    "Name",
    "Qualifier",
    "Resource",
    "AlarmName",
    "AlarmNames",
    "StateValue",
    "Namespace",
    "MetricName",
    "QueueUrl",
    "EventBusName",
    "TableName",
    # Alias writes: where they point (the call log is the alias-write history tests read), and the
    # RevisionId they were made against (that each write carries the one its re-read returned).
    "FunctionVersion",
    "RoutingConfig",
    "RevisionId",
)


@dataclass
class Operation:
    """What a request asks for: service, operation name, region and the key parameters."""

    service: str
    operation: str
    region: str = "us-east-1"
    params: dict[str, Any] = field(default_factory=dict)
    protocol: str = "json"


@functools.cache
def _lambda_routes() -> list[tuple[str, re.Pattern[str], dict[str, str], str, list[str]]]:
    """Compile the Lambda REST routes from botocore's own service model (no hand-kept table)."""
    import botocore.loaders

    model = botocore.loaders.create_loader().load_service_model("lambda", "service-2")
    routes = []
    for name, op in model["operations"].items():
        method = op["http"]["method"]
        uri = op["http"]["requestUri"]
        path, _, query = uri.partition("?")
        required = {k: v[0] for k, v in parse_qs(query).items()} if query else {}
        labels = re.findall(r"\{([^}+]+)\+?\}", path)
        pattern = re.sub(r"\{[^}+]+\+\}", "(.+)", path)
        pattern = re.sub(r"\{[^}]+\}", "([^/]+)", pattern)
        routes.append((method, re.compile("^" + pattern.rstrip("/") + "/?$"), required, name, labels))
    # Routes that need a query parameter (``?List=ALL``) must win over their bare twin.
    routes.sort(key=lambda r: -len(r[2]))
    return routes


def lambda_operation(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """Return (operation, path parameters) for a Lambda REST request, or ("Unknown", {})."""
    for route_method, pattern, required, name, labels in _lambda_routes():
        if route_method != method:
            continue
        match = pattern.match(path)
        if not match:
            continue
        if any(query.get(k, [None])[0] != v for k, v in required.items()):
            continue
        return name, {label: unquote(value) for label, value in zip(labels, match.groups(), strict=False)}
    return "Unknown", {}


def identify(method: str, path: str, query_string: str, headers: dict[str, str], body: bytes) -> Operation:
    """Work out service, operation and key parameters of one raw AWS request."""
    lower = {k.lower(): v for k, v in headers.items()}
    query = parse_qs(query_string, keep_blank_values=True)
    region = "us-east-1"
    service = ""
    cred = _CREDENTIAL_RE.search(lower.get("authorization", ""))
    if cred:
        region, signing = cred.group(1), cred.group(2)
        service = _SIGNING_TO_SERVICE.get(signing, signing)
    target = lower.get("x-amz-target", "")
    if target:
        prefix, _, op_name = target.rpartition(".")
        service = _TARGET_PREFIX_TO_SERVICE.get(prefix, service or prefix)
        params = _json_params(body)
        return Operation(service, op_name, region, _pick(params), "json")
    content_type = lower.get("content-type", "")
    if "x-www-form-urlencoded" in content_type or "Action" in query:
        form = parse_qs(body.decode("utf-8", "replace")) if body else {}
        form.update(query)
        action = form.get("Action", ["Unknown"])[0]
        flat = {k: v[0] for k, v in form.items()}
        names = [v for k, v in sorted(flat.items()) if k.startswith("AlarmNames.member.")]
        picked = _pick(flat)
        if names:
            picked["AlarmNames"] = names
        return Operation(service or "unknown", action, region, picked, "query")
    if service == "lambda" or (not service and path.startswith(("/2015-", "/2017-", "/2019-", "/2020-"))):
        op_name, path_params = lambda_operation(method, path, query)
        lambda_params: dict[str, Any] = dict(path_params)
        if "Qualifier" in query:
            lambda_params["Qualifier"] = query["Qualifier"][0]
        if op_name in ("CreateAlias", "CreateFunction", "UpdateAlias"):
            lambda_params.update(_pick(_json_params(body)))
        return Operation("lambda", op_name, region, _pick(lambda_params), "rest-json")
    return Operation(service or "unknown", "Unknown", region, {}, "unknown")


def _json_params(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _pick(params: dict[str, Any]) -> dict[str, Any]:
    return {k: params[k] for k in KEY_PARAMS if k in params}


# --- AWS-shaped error responses --------------------------------------------------------------

ErrorResponse = tuple[int, dict[str, str], bytes]


def lambda_error(status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> ErrorResponse:
    """Lambda's REST-JSON error: JSON body with ``Type``/``message`` and ``x-amzn-errortype``."""
    body: dict[str, Any] = {"Type": "User" if status < 500 else "Service", "message": message}
    body.update(extra or {})
    headers = {
        "Content-Type": "application/json",
        "x-amzn-errortype": code,
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return status, headers, json.dumps(body).encode()


def json_protocol_error(status: int, code: str, message: str, service: str = "cloudwatch") -> ErrorResponse:
    """awsJson1_0/1_1 error; CloudWatch is query-compatible so the code also goes in a header."""
    namespace = {"cloudwatch": "com.amazonaws.cloudwatch"}.get(service, f"com.amazonaws.{service}")
    fault = "Sender" if status < 500 else "Receiver"
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "x-amzn-query-error": f"{code};{fault}",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return status, headers, json.dumps({"__type": f"{namespace}#{code}", "message": message}).encode()


def query_protocol_error(status: int, code: str, message: str) -> ErrorResponse:
    """Query-protocol XML error (what CloudWatch returned before it moved to JSON)."""
    fault = "Sender" if status < 500 else "Receiver"
    body = (
        '<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/">'
        f"<Error><Type>{fault}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body.encode()


def error_for(op: Operation, status: int, code: str, message: str) -> ErrorResponse:
    """The error response in the wire protocol the request used."""
    if op.protocol == "rest-json":
        return lambda_error(status, code, message)
    if op.protocol == "query":
        return query_protocol_error(status, code, message)
    return json_protocol_error(status, code, message, op.service)


def throttling_error(op: Operation) -> ErrorResponse:
    """The throttling error each service really returns."""
    if op.service == "lambda":
        status, headers, body = lambda_error(
            429, "TooManyRequestsException", "Rate exceeded", {"Reason": "CallerRateLimitExceeded"}
        )
        headers["Retry-After"] = "1"
        return status, headers, body
    code = "ThrottlingException" if op.service in ("events", "logs") else "Throttling"
    return error_for(op, 400, code, "Rate exceeded")


def server_error(op: Operation, status: int) -> ErrorResponse:
    """A 5xx in the service's own words (botocore retries these)."""
    if op.service == "lambda":
        code = "ServiceException" if status == 500 else "ServiceUnavailableException"
    else:
        code = "InternalFailure" if status == 500 else "ServiceUnavailable"
    return error_for(op, status, code, "The service is unavailable, try again later")
