"""The WSGI layer between the HTTP server and moto: call log, control endpoints, strict Lambda.

moto's server is a WSGI application, so wrapping it is the least invasive way to see every
request (for the call log benchmarks read), to answer ``/_emulator/*`` control requests, and to
let :class:`~controller.emulator.lambda_ext.StrictLambda` refuse or serve Lambda requests before
moto's lenient handlers run (and :class:`~controller.emulator.dynamodb_ext.StrictDynamoDb` serve
DynamoDB's conditional writes atomically, :class:`~controller.emulator.sts_ext.StrictSts` refuse the
``AssumeRole`` calls a role's trust policy refuses), without forking moto. Each record names the
access key that signed the request and the account moto took it for, so a test running several
clients (controller processes with keys of their own, roles assumed in other accounts) can tell
whose call it was and in which account it landed.

The Lambda control endpoints are the emulator's own, not AWS APIs: ``/_emulator/lambda/behaviour``
sets how a version answers Invoke (no code runs without Docker), and ``/_emulator/lambda/traffic``
simulates N invocations server-side, recorded exactly as N Invokes, because tests, the demo and the
benchmarks need more traffic than N round trips could give them.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs

from moto.core.exceptions import JsonRESTError
from moto.core.models import DEFAULT_ACCOUNT_ID

from .dynamodb_ext import StrictDynamoDb
from .lambda_ext import AwsError, StrictLambda
from .lambda_metrics import Behaviour
from .settings import WRITE_LOCK, EmulatorSettings
from .sts_ext import StrictSts
from .wire import identify, lambda_error

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request"}


@dataclass
class CallRecord:
    """One request the emulator served."""

    timestamp: float
    service: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    status: int = 0
    duration_ms: float = 0.0
    # The response body of the few reads whose answer tests need to time (provisioned concurrency
    # turning READY); empty for every other operation.
    result: dict[str, Any] = field(default_factory=dict)
    # The access key id the request was signed with ("" when unsigned): who made the call.
    access_key: str = ""
    # The account moto served it in (the signing key's account: an assumed role's lands in the role's).
    account: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CallLog:
    """Thread-safe, bounded list of :class:`CallRecord`."""

    def __init__(self, limit: int) -> None:
        self._records: deque[CallRecord] = deque(maxlen=limit)
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> None:
        with self._lock:
            # In log order, never earlier than the record before: two threads may take their clock
            # readings in one order and their turns here in the other, and ``since`` relies on it.
            if self._records and record.timestamp < self._records[-1].timestamp:
                record.timestamp = self._records[-1].timestamp
            self._records.append(record)

    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _access_key_from(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    return auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else ""


def _account_from(headers: dict[str, str]) -> str:
    """moto maps access keys to accounts; mirror that so our store agrees with moto's."""
    return _account_of_key(_access_key_from(headers))


def _account_of_key(access_key: str) -> str:
    if not access_key:
        return DEFAULT_ACCOUNT_ID
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(access_key))


class EmulatorApp:
    """WSGI middleware wrapping moto's application."""

    def __init__(
        self,
        inner: WsgiApp,
        settings: EmulatorSettings,
        strict_lambda: StrictLambda,
        strict_dynamodb: StrictDynamoDb,
        on_reset: Callable[[], None],
        on_configure: Callable[[dict[str, Any]], None],
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.strict_lambda = strict_lambda
        self.strict_dynamodb = strict_dynamodb
        self.strict_sts = StrictSts()
        self.calls = CallLog(settings.call_log_limit)
        self._on_reset = on_reset
        self._on_configure = on_configure

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_emulator/"):
            return self._control(environ, start_response, path)
        body = _read_body(environ)
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        method = environ.get("REQUEST_METHOD", "GET")
        query_string = environ.get("QUERY_STRING", "")
        op = identify(method, path, query_string, headers, body)
        started = time.monotonic()
        status_holder: list[int] = [0]
        chunks: list[bytes] | Iterable[bytes] = []

        def recording_start(status: str, response_headers: list[tuple[str, str]], *exc: Any) -> Any:
            status_holder[0] = int(status.split(" ", 1)[0])
            return start_response(status, response_headers, *exc)

        try:
            if op.service == "lambda" and op.operation == "Invoke":
                # Invoke writes no Lambda state (its metrics have their own lock) and may sleep on
                # purpose: it must not hold up the control plane.
                chunks = self._lambda(environ, recording_start, op, query_string, body, headers)
            elif op.service == "lambda":
                # The whole check-then-write must be atomic: see WRITE_LOCK.
                with WRITE_LOCK:
                    chunks = self._lambda(environ, recording_start, op, query_string, body, headers)
            elif op.service == "dynamodb":
                account = _account_from(headers)
                chunks = self.strict_dynamodb.serve(self.inner, environ, recording_start, op=op, account=account)
            elif op.service == "sts" and op.operation == "AssumeRole":
                chunks = self._assume_role(environ, recording_start, query_string, body, headers)
            else:
                chunks = list(self.inner(environ, recording_start))
        finally:
            if not path.startswith("/moto-api"):
                self.calls.add(
                    CallRecord(
                        timestamp=time.time(),
                        service=op.service,
                        operation=op.operation,
                        params=op.params,
                        status=status_holder[0],
                        duration_ms=round((time.monotonic() - started) * 1000, 3),
                        result=_logged_result(op.operation, chunks),
                        access_key=_access_key_from(headers),
                        account=_account_from(headers),
                    )
                )
        return chunks

    def _lambda(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        op: Any,
        query_string: str,
        body: bytes,
        headers: dict[str, str],
    ) -> list[bytes]:
        account = _account_from(headers)
        try:
            served = self.strict_lambda.before(op, account, parse_qs(query_string), body, headers)
        except AwsError as err:
            served = lambda_error(err.status, err.code, err.message)
        except JsonRESTError as err:  # moto's own lookups raise its exceptions: pass them on as-is
            served = lambda_error(int(err.code), err.error_type, err.message)
        if served is None:
            return list(self.inner(environ, start_response))
        status, response_headers, payload = served
        response_headers = {**response_headers, "Content-Length": str(len(payload))}
        start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", list(response_headers.items()))
        return [payload]

    def _assume_role(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        query_string: str,
        body: bytes,
        headers: dict[str, str],
    ) -> list[bytes]:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        form.update({k: v[0] for k, v in parse_qs(query_string).items()})
        refused = self.strict_sts.refusal(form, access_key=_access_key_from(headers))
        if refused is None:
            return list(self.inner(environ, start_response))
        status, response_headers, payload = refused
        response_headers = {**response_headers, "Content-Length": str(len(payload))}
        start_response(f"{status} {'Forbidden' if status == 403 else 'Bad Request'}", list(response_headers.items()))
        return [payload]

    def _control(self, environ: dict[str, Any], start_response: StartResponse, path: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status: int = 200
        payload: dict[str, Any] = {}
        try:
            if path == "/_emulator/calls" and method == "GET":
                # ``?since=T``: only the calls after epoch second T, so a long benchmark can follow the
                # log without being sent all of it again and again.
                since = float(parse_qs(environ.get("QUERY_STRING", "")).get("since", ["-inf"])[0])
                payload = {"calls": [r.to_dict() for r in self.calls.records() if r.timestamp > since]}
            elif path == "/_emulator/calls/clear" and method == "POST":
                self.calls.clear()
                payload = {"status": "ok"}
            elif path == "/_emulator/config" and method == "POST":
                self._on_configure(json.loads(_read_body(environ) or b"{}"))
                payload = {"settings": self.settings.to_dict()}
            elif path == "/_emulator/config" and method == "GET":
                payload = {"settings": self.settings.to_dict()}
            elif path == "/_emulator/account" and method == "GET":
                # Which account an access key belongs to (the fault proxy's per-account quotas ask).
                key = parse_qs(environ.get("QUERY_STRING", "")).get("access_key", [""])[0]
                payload = {"account": _account_of_key(key)}
            elif path == "/_emulator/reset" and method == "POST":
                self._on_reset()
                payload = {"status": "ok"}
            elif path == "/_emulator/lambda/behaviour" and method == "POST":
                self._set_behaviour(json.loads(_read_body(environ) or b"{}"))
                payload = {"behaviours": self.strict_lambda.behaviour_list()}
            elif path == "/_emulator/lambda/behaviour" and method == "GET":
                payload = {"behaviours": self.strict_lambda.behaviour_list()}
            elif path == "/_emulator/lambda/traffic" and method == "POST":
                payload = self._traffic(json.loads(_read_body(environ) or b"{}"))
            else:
                status, payload = 404, {"error": f"no such control endpoint: {method} {path}"}
        except AwsError as err:
            status, payload = err.status, {"error": err.message, "code": err.code}
        except (ValueError, TypeError, KeyError) as err:
            status, payload = 400, {"error": str(err)}
        data = json.dumps(payload).encode()
        start_response(
            f"{status} {'OK' if status == 200 else 'Error'}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
        )
        return [data]

    def _set_behaviour(self, data: dict[str, Any]) -> None:
        """``{"function", "version", "region"?, "account"?, <Behaviour fields>}``."""
        fields = dict(data)
        where = {
            "account": str(fields.pop("account", DEFAULT_ACCOUNT_ID)),
            "region": str(fields.pop("region", "us-east-1")),
            "function": str(fields.pop("function")),
            "version": str(fields.pop("version")),
        }
        self.strict_lambda.set_behaviour(**where, behaviour=Behaviour.from_dict(fields))

    def _traffic(self, data: dict[str, Any]) -> dict[str, Any]:
        """``{"function", "qualifier"?, "count" | "rate" + "seconds", "at"?, "seed"?, "region"?, "account"?}``."""
        known = {"function", "qualifier", "count", "rate", "seconds", "at", "seed", "region", "account"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown traffic fields: {', '.join(unknown)}")
        return self.strict_lambda.traffic(
            account=str(data.get("account", DEFAULT_ACCOUNT_ID)),
            region=str(data.get("region", "us-east-1")),
            function=str(data["function"]),
            qualifier=data.get("qualifier"),
            count=data.get("count"),
            rate=data.get("rate"),
            seconds=data.get("seconds"),
            at=data.get("at"),
            seed=data.get("seed"),
        )


#: Operations whose response body goes into the call log.
LOGGED_RESULTS = frozenset(
    {"GetProvisionedConcurrencyConfig", "ListProvisionedConcurrencyConfigs", "PutProvisionedConcurrencyConfig"}
)


def _logged_result(operation: str, chunks: list[bytes] | Iterable[bytes]) -> dict[str, Any]:
    if operation not in LOGGED_RESULTS or not isinstance(chunks, list):
        return {}
    try:
        parsed = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the request body once and put it back so moto can read it again."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    body: bytes = stream.read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body
