"""The call log, the HTTP control endpoints and the fault-injection proxy."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from controller.emulator import Emulator
from controller.emulator.proxy import FaultProxy, FaultRule, Quota
from controller.emulator.wire import Operation


def _http(url: str, data: Any = None) -> Any:
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(url, data=body, method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def proxy(aws: Emulator) -> Any:
    with FaultProxy.start(upstream=aws.url, seed=1) as running:
        yield running


def _client(proxy: FaultProxy, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=proxy.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def test_call_log_in_process_and_over_http(aws: Emulator) -> None:
    aws.seed_function("svc", versions=1)
    lam = aws.client("lambda")
    lam.get_function(FunctionName="svc", Qualifier="1")
    with pytest.raises(ClientError):
        lam.get_alias(FunctionName="svc", Name="missing")
    aws.client("cloudwatch").describe_alarms(AlarmNames=["a"])
    calls = aws.calls()
    ops = [(c.service, c.operation) for c in calls]
    assert ("lambda", "CreateFunction") in ops
    assert ("lambda", "PublishVersion") in ops
    get = next(c for c in calls if c.operation == "GetFunction")
    assert get.params == {"FunctionName": "svc", "Qualifier": "1"} and get.status == 200
    alias = next(c for c in calls if c.operation == "GetAlias")
    assert alias.status == 404 and alias.params["Name"] == "missing"
    described = next(c for c in calls if c.operation == "DescribeAlarms")
    assert described.service == "cloudwatch" and described.params["AlarmNames"] == ["a"]
    over_http = _http(f"{aws.url}/_emulator/calls")["calls"]
    assert len(over_http) >= len(calls)
    # ``since``: only what came after an instant, for a follower that must not re-read the whole log.
    after_get = _http(f"{aws.url}/_emulator/calls?since={get.timestamp}")["calls"]
    assert [c["operation"] for c in after_get][:2] == ["GetAlias", "DescribeAlarms"]
    _http(f"{aws.url}/_emulator/calls/clear", {})
    assert aws.calls() == []


def test_config_and_reset_over_http(aws: Emulator) -> None:
    settings = _http(f"{aws.url}/_emulator/config", {"provisioned_concurrency_delay": 0.05})["settings"]
    assert settings["provisioned_concurrency_delay"] == 0.05
    assert aws.settings.provisioned_concurrency_delay == 0.05
    aws.seed_function("svc", versions=1)
    _http(f"{aws.url}/_emulator/reset", {})
    assert aws.client("lambda").list_functions()["Functions"] == []


def test_proxy_throttles_lambda_like_aws(aws: Emulator, proxy: FaultProxy) -> None:
    aws.seed_function("svc", versions=1)
    proxy.set_rules([FaultRule("throttle", service="lambda", operation="GetFunction", count=1)])
    lam = _client(proxy, "lambda")
    with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
        lam.get_function(FunctionName="svc")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert lam.get_function(FunctionName="svc")["Configuration"]["FunctionName"] == "svc"  # count exhausted
    assert proxy.counts()["lambda:GetFunction"] == 2


def test_proxy_throttles_cloudwatch_like_aws(proxy: FaultProxy) -> None:
    proxy.set_rules([FaultRule("throttle", service="cloudwatch", operation="DescribeAlarms")])
    cw = _client(proxy, "cloudwatch")
    with pytest.raises(ClientError) as exc:
        cw.describe_alarms()
    assert exc.value.response["Error"]["Code"] == "Throttling"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_proxy_server_errors_latency_and_drops(aws: Emulator, proxy: FaultProxy) -> None:
    lam = _client(proxy, "lambda")
    proxy.set_rules([FaultRule("error", service="lambda", status=503, count=1)])
    with pytest.raises(ClientError) as exc:
        lam.list_functions()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    proxy.set_rules([FaultRule("latency", service="lambda", latency=0.2)])
    started = time.monotonic()
    lam.list_functions()
    assert time.monotonic() - started >= 0.2
    proxy.set_rules([FaultRule("drop", service="lambda", count=1)])
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        lam.list_functions()
    assert proxy.fault_counts()["lambda:ListFunctions:drop"] == 1


def test_proxy_probability_zero_never_fires(proxy: FaultProxy) -> None:
    proxy.set_rules([FaultRule("throttle", probability=0.0)])
    cw = _client(proxy, "cloudwatch")
    for _ in range(5):
        cw.describe_alarms()
    assert proxy.fault_counts() == {}


def test_aws_default_quotas() -> None:
    quotas = {q.name: q for q in Quota.aws_defaults()}
    assert quotas["lambda-control-plane"].rate == 15
    # AWS meters GetFunction on its own (100/s), not in the control plane's 15/s.
    assert quotas["lambda-get-function"].rate == 100
    get_function = Operation(service="lambda", operation="GetFunction", params={})
    assert not quotas["lambda-control-plane"].matches(get_function)
    assert quotas["lambda-get-function"].matches(get_function)
    assert quotas["describe-alarms"].rate == 9
    assert quotas["get-metric-data"].rate == 50


def test_proxy_quota_throttles_beyond_rate(proxy: FaultProxy) -> None:
    # 0.1/s rather than 1/s: on a loaded machine 15 calls can take seconds, and a faster refill
    # would then let enough through to fail the count below without any bug.
    proxy.set_quotas([Quota("slow", "cloudwatch", rate=0.1, burst=3, operations=frozenset({"DescribeAlarms"}))])
    cw = _client(proxy, "cloudwatch")
    throttled = 0
    for _ in range(15):
        try:
            cw.describe_alarms()
        except ClientError as err:
            assert err.response["Error"]["Code"] == "Throttling"
            throttled += 1
    assert throttled >= 8  # a burst of 3 at 0.1/s: a tight loop of 15 must be cut
    assert proxy.counts()["cloudwatch:DescribeAlarms"] == 15


def test_proxy_http_control(proxy: FaultProxy) -> None:
    _http(f"{proxy.url}/_proxy/rules", [{"action": "throttle", "service": "cloudwatch"}])
    with pytest.raises(ClientError):
        _client(proxy, "cloudwatch").describe_alarms()
    assert _http(f"{proxy.url}/_proxy/counts")["counts"] == {"cloudwatch:DescribeAlarms": 1}
    _http(f"{proxy.url}/_proxy/counts/clear", {})
    assert proxy.counts() == {}


def test_proxy_keeps_connections_alive_with_whole_responses(aws: Emulator, proxy: FaultProxy) -> None:
    """Responses go out in one buffered write: small, larger than the buffer, and HEAD, on one connection."""
    import http.client

    aws.seed_function("svc", versions=1)
    for _ in range(500):  # a call log larger than the proxy's 64 KiB write buffer
        aws.client("lambda").get_function(FunctionName="svc")
    host, port = proxy.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/_proxy/counts")
            small = connection.getresponse()
            assert small.status == 200 and "counts" in json.loads(small.read())
            connection.request("GET", "/_emulator/calls")
            large = connection.getresponse()
            body = large.read()
            assert large.status == 200 and len(body) > 64 * 1024
            assert len(json.loads(body)["calls"]) >= 500
            connection.request("HEAD", "/_emulator/config")  # no HEAD handler: a 404, with no body
            head = connection.getresponse()
            assert head.status == 404 and head.read() == b""
        assert connection.sock is not None  # the same connection served all nine
    finally:
        connection.close()
