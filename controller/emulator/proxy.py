"""A fault-injection HTTP proxy between boto3 and the emulator.

The controller must survive what AWS does under load: throttling (Lambda's 15 req/s control
plane, DescribeAlarms 9 TPS, GetMetricData 50 TPS), 5xx, slow answers and dropped connections.
The proxy produces each of these on demand, by rule or by rate quota, in the exact wire format
of the service (so botocore raises the same ``ClientError`` codes), and counts every call by
service and operation so benchmarks can report the API cost of a scenario.

Control it in-process (:meth:`FaultProxy.set_rules`, :meth:`FaultProxy.set_quotas`) or over
HTTP: ``GET /_proxy/counts``, ``POST /_proxy/counts/clear``, ``POST /_proxy/rules`` and
``POST /_proxy/quotas`` (JSON lists of the dataclass fields).

AWS's quotas are per account (and region): a rule or quota with ``account`` applies only to the
calls signed by a key of that account, so one account can be throttled beside another that is not.
The proxy learns a key's account from the emulator behind it (``GET /_emulator/account``, once per
key), and only when some rule or quota names an account.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .wire import ErrorResponse, Operation, identify, server_error, throttling_error

#: Lambda operations outside the shared control-plane quota: the data plane (much higher limits) and
#: the two reads AWS meters on their own (GetFunction 100/s, GetPolicy 15/s).
_LAMBDA_OWN_QUOTAS = frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream", "GetFunction", "GetPolicy"})


@dataclass
class FaultRule:
    """Inject one kind of fault into matching calls.

    ``action``: ``throttle`` | ``error`` (HTTP ``status``, 500 or 503) | ``latency`` (add
    ``latency`` seconds, then forward) | ``drop`` (close the connection without answering).
    A rule fires with ``probability`` and at most ``count`` times (``None`` = unlimited).
    ``service`` / ``operation`` of ``None`` match anything; ``function`` (a Lambda function name)
    narrows a rule to the calls on that one function, so one rollout can be throttled beside others;
    ``account`` to the calls signed in that account.
    """

    action: str
    service: str | None = None
    operation: str | None = None
    probability: float = 1.0
    count: int | None = None
    status: int = 500
    latency: float = 0.0
    function: str | None = None
    account: str | None = None
    fired: int = 0

    def matches(self, op: Operation, account: str = "") -> bool:
        if self.function is not None and _function_name(op) != self.function:
            return False
        if self.account is not None and account != self.account:
            return False
        return (self.service in (None, op.service)) and (self.operation in (None, op.operation))


def _function_name(op: Operation) -> str:
    """The short function name a Lambda call is about (its path may carry a name or an ARN)."""
    name = str(op.params.get("FunctionName", ""))
    return name.split(":")[6] if name.startswith("arn:") else name


@dataclass
class Quota:
    """A token bucket over an API family: ``rate`` calls/s with bursts up to ``burst``; with
    ``account``, over that account's calls only (AWS's quotas are per account)."""

    name: str
    service: str
    rate: float
    burst: float | None = None
    operations: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    account: str | None = None
    _tokens: float = field(default=-1.0, repr=False)
    _stamp: float = field(default=0.0, repr=False)

    def matches(self, op: Operation, account: str = "") -> bool:
        if op.service != self.service or op.operation in self.exclude:
            return False
        if self.account is not None and account != self.account:
            return False
        return self.operations is None or op.operation in self.operations

    def take(self, now: float) -> bool:
        capacity = self.burst if self.burst is not None else self.rate
        if self._tokens < 0:
            self._tokens, self._stamp = capacity, now
        self._tokens = min(capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @staticmethod
    def aws_defaults() -> list[Quota]:
        """AWS's published per-account limits for the APIs the controller uses."""
        return [
            # "15 requests per second across all APIs (not 15 requests per second per API)".
            Quota("lambda-control-plane", "lambda", 15.0, exclude=_LAMBDA_OWN_QUOTAS),
            Quota("lambda-get-function", "lambda", 100.0, operations=frozenset({"GetFunction"})),
            Quota("lambda-get-policy", "lambda", 15.0, operations=frozenset({"GetPolicy"})),
            Quota("describe-alarms", "cloudwatch", 9.0, operations=frozenset({"DescribeAlarms"})),
            Quota("get-metric-data", "cloudwatch", 50.0, operations=frozenset({"GetMetricData"})),
        ]


def _rule_from(data: dict[str, Any]) -> FaultRule:
    names = {f.name for f in dataclasses.fields(FaultRule)}
    return FaultRule(**{k: v for k, v in data.items() if k in names})


def _quota_from(data: dict[str, Any]) -> Quota:
    kwargs = {k: v for k, v in data.items() if k in ("name", "service", "rate", "burst", "account")}
    if data.get("operations") is not None:
        kwargs["operations"] = frozenset(data["operations"])
    if data.get("exclude"):
        kwargs["exclude"] = frozenset(data["exclude"])
    return Quota(**kwargs)


class FaultProxy:
    """The running proxy. Create it with :meth:`start`."""

    def __init__(self, upstream: str, rules: Iterable[FaultRule], quotas: Iterable[Quota], seed: int | None) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self._rules = list(rules)
        self._quotas = list(quotas)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._faults: Counter[str] = Counter()
        self._random = random.Random(seed)
        # access key id -> its account, as the emulator upstream says (keys never change account).
        self._accounts: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @classmethod
    def start(
        cls,
        upstream: str,
        rules: Iterable[FaultRule] = (),
        quotas: Iterable[Quota] = (),
        port: int = 0,
        host: str = "127.0.0.1",
        seed: int | None = None,
    ) -> FaultProxy:
        """Listen on ``host:port`` (0 = free port) and forward to ``upstream``."""
        proxy = cls(upstream, rules, quotas, seed)
        handler = type("_BoundHandler", (_Handler,), {"proxy": proxy})
        server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        proxy._server = server
        proxy.url = f"http://{host}:{server.server_address[1]}"
        proxy._thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
        proxy._thread.start()
        return proxy

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- configuration and counters -----

    def set_rules(self, rules: Iterable[FaultRule]) -> None:
        with self._lock:
            self._rules = list(rules)

    def set_quotas(self, quotas: Iterable[Quota]) -> None:
        with self._lock:
            self._quotas = list(quotas)

    def counts(self) -> dict[str, int]:
        """Calls seen, keyed ``service:Operation`` (faulted calls included)."""
        with self._lock:
            return dict(self._counts)

    def fault_counts(self) -> dict[str, int]:
        """Injected faults, keyed ``service:Operation:kind``."""
        with self._lock:
            return dict(self._faults)

    def clear_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._faults.clear()

    # ----- decision -----

    def account_of(self, access_key: str) -> str:
        """The account of ``access_key`` ("" when unknown), asked of the emulator once per key;
        only when some rule or quota names an account (otherwise no call is made)."""
        with self._lock:
            wanted = any(r.account is not None for r in self._rules) or any(q.account is not None for q in self._quotas)
            known = self._accounts.get(access_key)
        if not wanted or not access_key:
            return ""
        if known is not None:
            return known
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=10)
        try:
            conn.request("GET", f"/_emulator/account?access_key={access_key}")
            response = conn.getresponse()
            account = str(json.loads(response.read() or b"{}").get("account", "")) if response.status == 200 else ""
        except (OSError, ValueError):
            return ""
        finally:
            conn.close()
        with self._lock:
            self._accounts[access_key] = account
        return account

    def decide(self, op: Operation, account: str = "") -> tuple[str, ErrorResponse | None, float]:
        """(``forward`` | ``respond`` | ``drop``, response to send, delay before acting); ``account``:
        the account of the key that signed the call (``account_of``)."""
        key = f"{op.service}:{op.operation}"
        now = time.monotonic()
        with self._lock:
            self._counts[key] += 1
            delay = 0.0
            for rule in self._rules:
                if not rule.matches(op, account) or (rule.count is not None and rule.fired >= rule.count):
                    continue
                if self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self._faults[f"{key}:{rule.action}"] += 1
                if rule.action == "latency":
                    delay += rule.latency
                    continue
                if rule.action == "throttle":
                    return "respond", throttling_error(op), delay
                if rule.action == "error":
                    return "respond", server_error(op, rule.status), delay
                if rule.action == "drop":
                    return "drop", None, delay
            for quota in self._quotas:
                if quota.matches(op, account) and not quota.take(now):
                    self._faults[f"{key}:quota"] += 1
                    return "respond", throttling_error(op), delay
        return "forward", None, delay

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    # ----- HTTP control -----

    def control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if path == "/_proxy/counts" and method == "GET":
            return 200, {"counts": self.counts(), "faults": self.fault_counts()}
        if path == "/_proxy/counts/clear" and method == "POST":
            self.clear_counts()
            return 200, {"status": "ok"}
        if path == "/_proxy/rules" and method == "POST":
            self.set_rules(_rule_from(r) for r in json.loads(body or b"[]"))
            return 200, {"status": "ok"}
        if path == "/_proxy/quotas" and method == "POST":
            data = json.loads(body or b"[]")
            quotas = Quota.aws_defaults() if data == "aws" else [_quota_from(q) for q in data]
            self.set_quotas(quotas)
            return 200, {"status": "ok"}
        return 404, {"error": f"no such control endpoint: {method} {path}"}


def _access_key(headers: dict[str, str]) -> str:
    auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    return auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else ""


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "content-length"}


class _Handler(BaseHTTPRequestHandler):
    """One client connection, kept alive (HTTP/1.1) as botocore keeps it.

    On a kept-alive connection the client acknowledges late (delayed ACK, up to 40 ms on Linux),
    and Nagle's algorithm holds back a small segment while an earlier one is unacknowledged. A
    response written as two segments (headers, then body) therefore waited about 44 ms for each
    round trip. Each response is now written in one piece (the buffered ``wfile``, flushed once)
    and Nagle is off on the socket, so nothing waits for an acknowledgement.
    """

    proxy: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: Buffer the status line, headers and body of a response so they leave in one write.
    wbufsize = 64 * 1024

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        if path.startswith("/_proxy/"):
            status, payload = self.proxy.control(self.command, path, body)
            self._send(status, [("Content-Type", "application/json")], json.dumps(payload).encode())
            return
        headers = {k: v for k, v in self.headers.items()}
        op = identify(self.command, path, query, headers, body)
        account = self.proxy.account_of(_access_key(headers))
        action, response, delay = self.proxy.decide(op, account)
        if delay:
            time.sleep(delay)
        if action == "drop":
            # Close without a byte of response: botocore sees a connection error, as on a reset.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if response is not None:
            status, extra, payload = response
            self._send(status, list(extra.items()), payload)
            return
        forward_headers = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, upstream_headers, payload = self.proxy.forward(self.command, self.path, forward_headers, body)
        except OSError as err:
            self._send(502, [("Content-Type", "text/plain")], f"upstream unreachable: {err}".encode())
            return
        kept = [(k, v) for k, v in upstream_headers if k.lower() not in _HOP_BY_HOP]
        self._send(status, kept, payload)

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle
