"""STS: who is calling, and the credentials of a role in another account.

In GitOps mode ``promote`` / ``abort`` ... reach the controller through a tag on the function, so IAM
decides who may; the ARN recorded next to the request says who did, for status and history.

``assume_role`` is how one controller serves several accounts: each account's role is assumed with
the controller's own credentials (its budget's ``sts`` family), and the temporary credentials it
returns sign that account's calls (``controller.aws.assume`` keeps them fresh). The secret parts
never appear in a ``repr``, so they cannot reach a log line by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.aws.calls import ApiCaller

__all__ = ["FAMILY", "StsAdapter", "TemporaryCredentials"]

FAMILY = "sts"


@dataclass(frozen=True)
class TemporaryCredentials:
    """What ``AssumeRole`` returns: keys valid until ``expiration`` (epoch seconds)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float


class StsAdapter:
    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def caller_arn(self) -> str:
        """The ARN of the identity the controller's credentials belong to (GetCallerIdentity)."""
        response = await self._caller.call("GetCallerIdentity", family=FAMILY)
        return str(response["Arn"])

    async def assume_role(
        self, *, role_arn: str, session_name: str, external_id: str | None, duration: int
    ) -> TemporaryCredentials:
        """AssumeRole: temporary credentials of ``role_arn`` for ``duration`` seconds."""
        params: dict[str, Any] = {"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration}
        if external_id is not None:
            params["ExternalId"] = external_id
        response = await self._caller.call("AssumeRole", family=FAMILY, **params)
        credentials = response["Credentials"]
        return TemporaryCredentials(
            access_key_id=str(credentials["AccessKeyId"]),
            secret_access_key=str(credentials["SecretAccessKey"]),
            session_token=str(credentials["SessionToken"]),
            expiration=credentials["Expiration"].timestamp(),
        )
