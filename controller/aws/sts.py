"""Who is calling: the control verbs record the caller's ARN with each request they leave.

In GitOps mode ``promote`` / ``abort`` ... reach the controller through a tag on the function, so IAM
decides who may; the ARN recorded next to the request says who did, for status and history.
"""

from __future__ import annotations

from controller.aws.calls import ApiCaller

__all__ = ["FAMILY", "StsAdapter"]

FAMILY = "sts"


class StsAdapter:
    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def caller_arn(self) -> str:
        """The ARN of the identity the controller's credentials belong to (GetCallerIdentity)."""
        response = await self._caller.call("GetCallerIdentity", family=FAMILY)
        return str(response["Arn"])
