"""EventBridge delivering the whole event envelope, as AWS does.

moto 5.2 rebuilds every event it delivers to a target from a template that leaves out ``account``,
so an SQS consumer of CloudWatch alarm state changes (which may check the account an event came
from) would see an envelope AWS never sends. :func:`install` puts ``account`` back into that
default template; a target's own ``InputTransformer`` is untouched.
"""

from __future__ import annotations

from moto.events.utils import EventTemplateParser

#: AWS's envelope: version, id, detail-type, source, account, time, region, resources, detail.
FULL_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", "resources": <resources>, "detail": <detail>}'
)


def install() -> None:
    """Patch moto's default event template (idempotent)."""
    EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = FULL_TEMPLATE
