"""Strict DynamoDB on top of moto: atomic conditional writes, and tables that take time to create.

The controller's GitOps lease (``controller.sources.lease``) is one DynamoDB item written with
conditional writes, so the two properties it relies on must hold here exactly as in AWS:

* **a conditional write is atomic.** moto's server is threaded and its ``PutItem`` / ``UpdateItem``
  / ``DeleteItem`` evaluate the ``ConditionExpression`` and then write, with no lock in between:
  measured here, of 8 to 16 clients racing an ``UpdateItem`` conditional on the same version, two
  succeeded in 1 trial of 100 to 200, which in AWS never happens (one wins, the others get
  ``ConditionalCheckFailedException``). Every DynamoDB request is served under one lock.
* **a new table is not usable at once.** AWS answers ``CreateTable`` with ``TableStatus:
  CREATING``; until the table is ``ACTIVE`` (seconds), ``DescribeTable`` says ``CREATING`` and item
  operations on it fail with ``ResourceNotFoundException``. moto makes a table ``ACTIVE``
  immediately, so code that forgot to wait would pass here and fail in AWS. Here a table is
  ``CREATING`` for ``EmulatorSettings.table_creation_delay`` seconds.

What moto already does as AWS does (checked by ``tests/integration/test_emulator_dynamodb.py``):
``ConditionalCheckFailedException`` (400) for a failed condition, with the old item when
``ReturnValuesOnConditionCheckFailure=ALL_OLD``; ``ResourceInUseException`` for an existing table;
``ResourceNotFoundException`` for a missing one; ``ValidationException`` for unused expression names
or values and for an item without its key.
"""

from __future__ import annotations

import binascii
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .settings import EmulatorSettings
from .wire import Operation

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Operations on a table's items: refused while the table is still being created.
ITEM_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"})
_NAMESPACE = "com.amazonaws.dynamodb.v20120810"
_STATUS_TEXT = {200: "OK", 400: "Bad Request"}


class StrictDynamoDb:
    """Serves every DynamoDB request through moto, one at a time, with tables CREATING for a while."""

    def __init__(self, settings: EmulatorSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        # One lock for all of DynamoDB: moto's check-then-write must not interleave with another write.
        self._lock = threading.Lock()
        # (account, region, table) -> when it becomes ACTIVE (our clock).
        self._active_at: dict[tuple[str, str, str], float] = {}

    def reset(self) -> None:
        with self._lock:
            self._active_at.clear()

    def serve(
        self,
        inner: WsgiApp,
        environ: dict[str, Any],
        start_response: StartResponse,
        *,
        op: Operation,
        account: str,
    ) -> list[bytes]:
        table = str(op.params.get("TableName", ""))
        key = (account, op.region, table)
        with self._lock:
            creating = self._creating(key)
            if creating and op.operation in ITEM_OPERATIONS:
                return _respond(start_response, *_not_found())
            captured: list[Any] = []

            def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Callable[[bytes], Any]:
                captured[:] = [status, headers]
                return lambda _data: None

            body = b"".join(inner(environ, capture))
            status_line, headers = captured
            status = int(str(status_line).split(" ", 1)[0])
            if status == 200 and op.operation == "CreateTable":
                self._active_at[key] = self._clock() + self.settings.table_creation_delay
                creating = self._creating(key)
            elif status == 200 and op.operation == "DeleteTable":
                self._active_at.pop(key, None)
            if status == 200 and creating and op.operation in ("CreateTable", "DescribeTable"):
                body = _still_creating(body)
            kept = [(name, value) for name, value in headers if name.lower() not in ("content-length", "x-amz-crc32")]
            return _respond(start_response, status, dict(kept), body)

    def _creating(self, key: tuple[str, str, str]) -> bool:
        active_at = self._active_at.get(key)
        if active_at is None:
            return False
        if self._clock() >= active_at:
            del self._active_at[key]
            return False
        return True


def _still_creating(body: bytes) -> bytes:
    """The table description with ``TableStatus: CREATING`` (CreateTable's and DescribeTable's)."""
    parsed = json.loads(body or b"{}")
    for field in ("TableDescription", "Table"):
        if isinstance(parsed.get(field), dict):
            parsed[field]["TableStatus"] = "CREATING"
    return json.dumps(parsed).encode()


def _not_found() -> tuple[int, dict[str, str], bytes]:
    payload = {"__type": f"{_NAMESPACE}#ResourceNotFoundException", "message": "Requested resource not found"}
    return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(payload).encode()


def _respond(start_response: StartResponse, status: int, headers: dict[str, str], body: bytes) -> list[bytes]:
    """AWS's DynamoDB responses carry a CRC32 of the body, which botocore checks: recomputed here."""
    headers = {**headers, "Content-Length": str(len(body)), "x-amz-crc32": str(binascii.crc32(body))}
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", list(headers.items()))
    return [body]
