"""SQS calls for the alarm-events queue: make or check the queue, long-poll it, delete what was handled.

CloudWatch alarm state changes reach the controller through an EventBridge rule whose target is one
SQS queue (``controller.analysis.alarm_events``). SQS is what makes that delivery survive a
controller restart: a message stays in the queue until it is deleted, so the consumer deletes a
message only after it has handed the change on, and one that arrived while no controller ran is
received by the next one.

AWS's limits shape the calls: ``ReceiveMessage`` returns at most 10 messages and long-polls at most
20 seconds (``WaitTimeSeconds``), and ``DeleteMessageBatch`` takes at most 10 entries (more are sent
in further calls). ``GetQueueUrl`` of a missing queue returns None (a missing queue is a normal state
in ``auto`` mode: it gets created); every call addressed to a queue URL that no longer exists raises
``NotFound`` (the queue was deleted under the consumer). All calls count against the ``"sqs"``
budget family.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.aws.calls import ApiCaller
from controller.aws.errors import NotFound

__all__ = ["FAMILY", "MAX_MESSAGES", "MAX_WAIT_SECONDS", "DeleteFailure", "Message", "SqsAdapter"]

FAMILY = "sqs"
#: ReceiveMessage: at most 10 messages a call (also DeleteMessageBatch's entry limit).
MAX_MESSAGES = 10
#: ReceiveMessage: a long poll waits at most 20 seconds.
MAX_WAIT_SECONDS = 20


@dataclass(frozen=True)
class Message:
    """One received message: its body and the receipt handle that deletes it."""

    message_id: str
    receipt_handle: str
    body: str


@dataclass(frozen=True)
class DeleteFailure:
    """A message DeleteMessageBatch did not delete (it will be received again)."""

    receipt_handle: str
    code: str
    message: str


class SqsAdapter:
    """Async SQS operations; see the module docstring for the conventions."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def queue_url(self, name: str) -> str | None:
        """The URL of the queue called ``name`` in this account and region, or None if there is none."""
        try:
            response = await self._caller.call("GetQueueUrl", family=FAMILY, QueueName=name)
        except NotFound:
            return None
        return str(response["QueueUrl"])

    async def create_queue(self, *, name: str, attributes: Mapping[str, str]) -> str:
        """Create the queue ``name`` with ``attributes``; returns its URL.

        AWS answers with the existing queue's URL if one of that name exists with the same attributes,
        and refuses (``Conflict``) if its attributes differ.
        """
        response = await self._caller.call("CreateQueue", family=FAMILY, QueueName=name, Attributes=dict(attributes))
        return str(response["QueueUrl"])

    async def queue_attributes(self, url: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        """The queue's attributes (``QueueArn``, ``Policy``, ``MessageRetentionPeriod`` ...) as strings."""
        response = await self._caller.call(
            "GetQueueAttributes", family=FAMILY, QueueUrl=url, AttributeNames=list(names)
        )
        return {str(key): str(value) for key, value in (response.get("Attributes") or {}).items()}

    async def set_queue_attributes(self, url: str, attributes: Mapping[str, str]) -> None:
        await self._caller.call("SetQueueAttributes", family=FAMILY, QueueUrl=url, Attributes=dict(attributes))

    async def receive(
        self,
        url: str,
        *,
        max_messages: int = MAX_MESSAGES,
        wait_seconds: int = MAX_WAIT_SECONDS,
    ) -> list[Message]:
        """Up to ``max_messages`` (1-10) messages, waiting up to ``wait_seconds`` (0-20) for the first one."""
        if not 1 <= max_messages <= MAX_MESSAGES:
            raise ValueError(f"max_messages must be 1-{MAX_MESSAGES}, got {max_messages}")
        if not 0 <= wait_seconds <= MAX_WAIT_SECONDS:
            raise ValueError(f"wait_seconds must be 0-{MAX_WAIT_SECONDS}, got {wait_seconds}")
        response = await self._caller.call(
            "ReceiveMessage",
            family=FAMILY,
            QueueUrl=url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
        )
        return [
            Message(
                message_id=str(raw.get("MessageId") or ""),
                receipt_handle=str(raw["ReceiptHandle"]),
                body=str(raw.get("Body") or ""),
            )
            for raw in response.get("Messages") or []
        ]

    async def delete_messages(self, url: str, receipt_handles: Sequence[str]) -> list[DeleteFailure]:
        """Delete the messages, 10 per call; returns those SQS did not delete (none: an empty list)."""
        failures: list[DeleteFailure] = []
        for start in range(0, len(receipt_handles), MAX_MESSAGES):
            chunk = receipt_handles[start : start + MAX_MESSAGES]
            entries: list[dict[str, Any]] = [
                {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(chunk)
            ]
            response = await self._caller.call("DeleteMessageBatch", family=FAMILY, QueueUrl=url, Entries=entries)
            for failed in response.get("Failed") or []:
                failures.append(
                    DeleteFailure(
                        receipt_handle=chunk[int(failed["Id"])],
                        code=str(failed.get("Code") or ""),
                        message=str(failed.get("Message") or ""),
                    )
                )
        return failures
