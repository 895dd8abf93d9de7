"""DynamoDB: the table the GitOps lease lives in, one item per lease, written only conditionally.

The lease algorithm (``controller.sources.lease``) needs four things from DynamoDB, and this adapter
gives exactly those, in the lease's vocabulary (``LeaseRecord``):

* a strongly consistent read of the item (``GetItem`` with ``ConsistentRead``: an eventually
  consistent read could show a version already replaced, and a contender would wait on it for nothing);
* "create it if nobody has" (``PutItem`` conditional on ``attribute_not_exists``) and "replace it if
  it is still the version I saw" (``PutItem`` conditional on the record version number);
* "renew / release it if it is still mine" (``UpdateItem`` conditional on the holder);
* the table itself, created on demand (``CreateTable``, on-demand billing: a lease costs a few
  requests a second at most) and waited for until ``ACTIVE``.

A failed condition is AWS's ``ConditionalCheckFailedException``, raised here as ``Conflict``:
someone else wrote first. Every write gives the item a fresh record version number (``rvn``): that
is what a contender watches to know the holder is alive, without comparing clocks between hosts.
The wall-clock times in the item are for people (logs, ``/readyz``), never for a decision.

All calls count against the ``dynamodb`` budget family, the lease's own: its renewals must never
wait behind the Lambda calls of a thousand rollouts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.aws.calls import ApiCaller
from controller.aws.errors import AwsError, NotFound

__all__ = ["FAMILY", "KEY", "DynamoDbAdapter", "LeaseRecord"]

FAMILY = "dynamodb"
#: The table's partition key: the lease's name.
KEY = "name"
_ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class LeaseRecord:
    """One lease item. ``holder`` is "" once released; ``version`` changes on every write."""

    name: str
    holder: str
    version: str
    # Seconds a contender must see ``version`` unchanged before it may take over (the holder's own).
    duration: float
    host: str = ""
    pid: int = 0
    # Epoch seconds on the holder's clock: when it took the lease and last renewed it (shown only).
    acquired_at: float = 0.0
    renewed_at: float = 0.0
    # How many times the lease changed hands.
    transitions: int = 0


def _item(record: LeaseRecord) -> dict[str, dict[str, str]]:
    return {
        KEY: {"S": record.name},
        "holder": {"S": record.holder},
        "rvn": {"S": record.version},
        "leaseDuration": {"N": repr(float(record.duration))},
        "host": {"S": record.host},
        "pid": {"N": str(record.pid)},
        "acquiredAt": {"N": repr(float(record.acquired_at))},
        "renewedAt": {"N": repr(float(record.renewed_at))},
        "transitions": {"N": str(record.transitions)},
    }


def _record(item: Mapping[str, Mapping[str, str]]) -> LeaseRecord:
    def text(name: str) -> str:
        return str((item.get(name) or {}).get("S", ""))

    def number(name: str) -> float:
        return float((item.get(name) or {}).get("N", "0"))

    return LeaseRecord(
        name=text(KEY),
        holder=text("holder"),
        version=text("rvn"),
        duration=number("leaseDuration"),
        host=text("host"),
        pid=int(number("pid")),
        acquired_at=number("acquiredAt"),
        renewed_at=number("renewedAt"),
        transitions=int(number("transitions")),
    )


class DynamoDbAdapter:
    """Async lease-table calls; a failed condition raises ``Conflict``."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        return await self._caller.call(operation, family=FAMILY, **params)

    # ---- the table ---------------------------------------------------------------------------

    async def table_status(self, table: str) -> str | None:
        """``CREATING`` / ``ACTIVE`` / ..., None when the table does not exist."""
        try:
            response = await self._call("DescribeTable", TableName=table)
        except NotFound:
            return None
        return str(response["Table"]["TableStatus"])

    async def ensure_table(self, table: str, *, create: bool, timeout: float = 120.0, poll: float = 1.0) -> None:
        """Return once ``table`` is ``ACTIVE``; create it first when missing and ``create``.

        Raises ``NotFound`` when it is missing and may not be created, ``AwsError`` when it is not
        ``ACTIVE`` within ``timeout`` seconds (AWS creates an on-demand table in seconds).
        """
        deadline = time.monotonic() + timeout
        status = await self.table_status(table)
        if status is None:
            if not create:
                raise NotFound(
                    code="ResourceNotFoundException", message=f"table {table} not found", operation="DescribeTable"
                )
            await self._create_table(table)
        while status != _ACTIVE:
            if time.monotonic() >= deadline:
                raise AwsError(code="TableNotActive", message=f"table {table} is {status}", operation="DescribeTable")
            await asyncio.sleep(poll)
            status = await self.table_status(table)

    async def _create_table(self, table: str) -> None:
        try:
            await self._call(
                "CreateTable",
                TableName=table,
                AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
                KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except AwsError as exc:
            # Another replica created it first (or is creating it): the same table either way.
            if exc.code != "ResourceInUseException":
                raise

    # ---- the lease item ----------------------------------------------------------------------

    async def read_lease(self, table: str, name: str) -> LeaseRecord | None:
        response = await self._call("GetItem", TableName=table, Key={KEY: {"S": name}}, ConsistentRead=True)
        item = response.get("Item")
        return _record(item) if item else None

    async def put_lease(self, table: str, record: LeaseRecord, *, replacing: str | None) -> None:
        """Write ``record`` if no item exists (``replacing`` None) or the item's version is ``replacing``."""
        if replacing is None:
            condition: dict[str, Any] = {
                "ConditionExpression": "attribute_not_exists(#key)",
                "ExpressionAttributeNames": {"#key": KEY},
            }
        else:
            condition = {"ConditionExpression": "rvn = :seen", "ExpressionAttributeValues": {":seen": {"S": replacing}}}
        await self._call("PutItem", TableName=table, Item=_item(record), **condition)

    async def renew_lease(self, table: str, *, name: str, holder: str, version: str, renewed_at: float) -> None:
        """Give the item the new ``version`` if ``holder`` still holds it."""
        await self._call(
            "UpdateItem",
            TableName=table,
            Key={KEY: {"S": name}},
            UpdateExpression="SET rvn = :version, renewedAt = :at",
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={
                ":version": {"S": version},
                ":at": {"N": repr(float(renewed_at))},
                ":me": {"S": holder},
            },
        )

    async def release_lease(self, table: str, *, name: str, holder: str, version: str) -> None:
        """Empty the holder (a contender takes it at once) if ``holder`` still holds it."""
        await self._call(
            "UpdateItem",
            TableName=table,
            Key={KEY: {"S": name}},
            UpdateExpression="SET holder = :nobody, rvn = :version",
            ConditionExpression="holder = :me",
            ExpressionAttributeValues={":nobody": {"S": ""}, ":version": {"S": version}, ":me": {"S": holder}},
        )
