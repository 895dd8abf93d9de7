"""SNS Publish, for notifications sent to a topic.

Notifications go out through the same ``ApiCaller`` as every other AWS call, so they count against a
budget family of their own (``"sns"``): a burst of messages can never take tokens a rollback needs
from the Lambda family, and the observer sees each Publish in the API-call metrics. Throttling and
5xx surface as the usual ``AwsError`` subclasses; whether to try again is the notifier's decision.

A FIFO topic (its name ends in ``.fifo``) needs a message group and a deduplication id: the caller
passes them, and SNS itself then drops a duplicate within its five-minute deduplication window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.aws.calls import ApiCaller

__all__ = ["FAMILY", "SnsAdapter"]

FAMILY = "sns"


class SnsAdapter:
    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def publish(
        self,
        *,
        topic_arn: str,
        message: str,
        subject: str = "",
        attributes: Mapping[str, str] | None = None,
        group_id: str | None = None,
        deduplication_id: str | None = None,
    ) -> str:
        """Publish ``message`` to ``topic_arn`` (with string message ``attributes``); returns the MessageId."""
        params: dict[str, Any] = {"TopicArn": topic_arn, "Message": message}
        if subject:
            params["Subject"] = subject
        if attributes:
            params["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            }
        if group_id is not None:
            params["MessageGroupId"] = group_id
        if deduplication_id is not None:
            params["MessageDeduplicationId"] = deduplication_id
        response = await self._caller.call("Publish", family=FAMILY, **params)
        return str(response["MessageId"])
