"""SNS: the webhook's CloudEvent published to a topic, with a short subject and filterable attributes.

The message is the same CloudEvents JSON a webhook receives (``controller.notify.webhook``), so one
consumer can read both; email subscribers see the subject. The subject is ASCII, one line and fewer
than 100 characters (SNS's rule). Message attributes ``trigger``, ``namespace``, ``rollout``,
``function`` and ``alias`` let a subscription filter policy pick, say, only ``RolledBack`` of one
namespace without reading bodies. A FIFO topic gets the rollout key as message group (so one
rollout's messages stay in order) and the transition id as deduplication id (so SNS drops a repeat).

The call goes through ``controller.aws.sns.SnsAdapter``: the controller's credentials, region and
API budget. Which AWS failures are worth another attempt is decided here: throttling, 5xx and
network errors are; a missing topic, a refused parameter or missing permission are not.
"""

from __future__ import annotations

import json

from controller.aws.errors import AwsError, InvalidRequest, NotFound
from controller.aws.sns import SnsAdapter

from .channel import DeliveryError, Prepared
from .links import GateLinks
from .text import headline
from .transition import Transition
from .webhook import render_cloudevent

__all__ = ["SUBJECT_LIMIT", "SnsChannel", "subject"]

#: SNS: "less than 100 characters".
SUBJECT_LIMIT = 99
_PERMANENT_CODES = frozenset(
    {
        "AuthorizationError",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "KMSAccessDenied",
        "KMSDisabled",
        "KMSNotFound",
        "EndpointDisabled",
    }
)


def subject(transition: Transition) -> str:
    """``[lambda-rollouts] Rolled back: payments/brand-api 43 (AlarmFired)``: ASCII, one line, < 100 characters."""
    text = f"[lambda-rollouts] {headline(transition, emoji=False)}"
    if transition.version:
        text += f" {transition.version}"
    if transition.reason:
        text += f" ({transition.reason})"
    ascii_only = "".join(c if 32 <= ord(c) < 127 else "?" for c in text)
    return ascii_only if len(ascii_only) <= SUBJECT_LIMIT else ascii_only[: SUBJECT_LIMIT - 3] + "..."


class SnsChannel:
    """Publishes to ``topic_arn`` through the controller's SNS adapter."""

    def __init__(self, *, name: str, topic_arn: str, sns: SnsAdapter) -> None:
        self._name = name
        self._topic_arn = topic_arn
        self._sns = sns
        self._fifo = topic_arn.endswith(".fifo")

    @property
    def name(self) -> str:
        return self._name

    def describe(self) -> str:
        return self._topic_arn

    def prepare(self, transition: Transition, links: GateLinks | None) -> Prepared:
        body = json.dumps(render_cloudevent(transition, links), ensure_ascii=False, separators=(",", ":"))
        attributes = {
            "trigger": transition.trigger.value,
            "namespace": transition.namespace,
            "rollout": transition.name,
            "function": transition.function_name,
            "alias": transition.alias,
        }
        return Prepared(
            transition=transition, body=body.encode("utf-8"), subject=subject(transition), attributes=attributes
        )

    async def deliver(self, prepared: Prepared) -> None:
        transition = prepared.transition
        try:
            await self._sns.publish(
                topic_arn=self._topic_arn,
                message=prepared.body.decode("utf-8"),
                subject=prepared.subject,
                attributes=prepared.attributes,
                group_id=transition.rollout_key if self._fifo else None,
                deduplication_id=transition.id if self._fifo else None,
            )
        except (NotFound, InvalidRequest) as error:
            raise DeliveryError(error.code, retryable=False) from None
        except AwsError as error:
            raise DeliveryError(error.code, retryable=error.code not in _PERMANENT_CODES) from None
