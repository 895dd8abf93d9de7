"""Strict STS ``AssumeRole``: the role must exist and its trust policy must let the caller in.

moto 5.2 hands out credentials for any role ARN ("the role does not need to exist"), ignores the
role's trust policy, never looks at ``ExternalId`` and accepts any ``DurationSeconds``. A controller
that assumes a role per account could then pass every test here and be refused by AWS on its first
call, or, worse, never notice that its external ID is wrong. AWS decides an ``AssumeRole`` by the
role's trust policy (the target account's say; the caller's own identity policy must allow it too,
which the emulator does not model); :class:`StrictSts` makes the same decision before moto serves
the request:

* the role must exist in the account of its ARN, and its trust policy must have an ``Allow``
  statement for ``sts:AssumeRole`` whose ``Principal`` names the caller (``*``, the caller's account
  as an id or ``arn:...:root``, or the caller's user or role ARN) and whose ``Condition`` holds, with
  no ``Deny`` statement matching; otherwise ``AccessDenied`` (403) in AWS's words: "User: <caller> is
  not authorized to perform: sts:AssumeRole on resource: <role>";
* conditions: ``StringEquals`` / ``StringLike`` / ``StringNotEquals`` / ``StringNotLike`` (with their
  ``IfExists`` forms) on ``sts:ExternalId``, ``aws:PrincipalAccount`` and ``aws:PrincipalArn``; a
  missing ``ExternalId`` fails a condition that asks for one, as in AWS, and an operator or key it
  does not know fails the statement (deny rather than a false allow);
* ``RoleSessionName`` 2-64 characters of ``[\\w+=,.@-]``, ``ExternalId`` 2-1224 of ``[\\w+=,.@:/-]``,
  ``DurationSeconds`` from 900 up to the role's ``MaxSessionDuration``: ``ValidationError`` (400).

Who the caller is comes from the access key that signed the request, as moto resolves it: an
assumed role's temporary key (its role), an IAM user's key, or any other key (moto's default
account, principal ``user/moto``).
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from moto.core.models import DEFAULT_ACCOUNT_ID

from .wire import ErrorResponse

_SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")
_EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
_ROLE_ARN = re.compile(r"^arn:(aws[a-zA-Z-]*):iam::([0-9]{12}):role/(.+)$")
MIN_DURATION = 900
_STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"


@dataclass(frozen=True)
class Caller:
    """Who signed a request: the account and the principal ARN a trust policy names."""

    account: str
    arn: str


def sts_error(status: int, code: str, message: str) -> ErrorResponse:
    """STS's query-protocol error document."""
    body = (
        f'<ErrorResponse xmlns="{_STS_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{_escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body.encode()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def caller_of(access_key: str) -> Caller:
    """The principal moto takes ``access_key`` for (see the module docstring)."""
    from moto.iam.models import get_account_id_from, iam_backends
    from moto.sts.models import sts_backends

    account = str(get_account_id_from(access_key)) if access_key else DEFAULT_ACCOUNT_ID
    assumed = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key)
    if assumed is not None:
        return Caller(account=account, arn=str(assumed.role_arn))
    user = iam_backends[account]["aws"].get_user_from_access_key_id(access_key) if access_key else None
    if user is not None:
        return Caller(account=account, arn=str(user.arn))
    return Caller(account=account, arn=f"arn:aws:iam::{account}:user/moto")


class StrictSts:
    """Refuses the ``AssumeRole`` requests AWS would refuse (see the module docstring)."""

    def refusal(self, form: Mapping[str, str], *, access_key: str) -> ErrorResponse | None:
        """The error AWS would answer ``form`` (an ``AssumeRole`` request) with, None to let moto serve it."""
        role_arn = form.get("RoleArn", "")
        session = form.get("RoleSessionName", "")
        external_id = form.get("ExternalId")
        if not _SESSION_NAME.match(session):
            return _validation(f"Value '{session}' at 'roleSessionName' failed to satisfy constraint: " + _SESSION_RULE)
        if external_id is not None and not _EXTERNAL_ID.match(external_id):
            return _validation(f"Value '{external_id}' at 'externalId' failed to satisfy constraint: " + _EXTERNAL_RULE)
        caller = caller_of(access_key)
        denied = sts_error(
            403,
            "AccessDenied",
            f"User: {caller.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        )
        role = _role(role_arn)
        if role is None:
            return denied
        if not trusts(_policy(role.assume_role_policy_document), caller=caller, external_id=external_id):
            return denied
        duration = int(form.get("DurationSeconds") or 3600)
        maximum = int(role.max_session_duration or 3600)
        if duration < MIN_DURATION:
            return _validation(
                f"Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
                f"Member must have value greater than or equal to {MIN_DURATION}"
            )
        if duration > maximum:
            return _validation(
                f"The requested DurationSeconds exceeds the MaxSessionDuration set for this role ({maximum})."
            )
        return None


_SESSION_RULE = "Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64"
_EXTERNAL_RULE = "Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]* and have length between 2 and 1224"


def _validation(message: str) -> ErrorResponse:
    return sts_error(400, "ValidationError", message)


def _role(role_arn: str) -> Any:
    """moto's role behind ``role_arn`` in its own account, None when there is none."""
    from moto.iam.models import iam_backends

    match = _ROLE_ARN.match(role_arn)
    if match is None:
        return None
    backend = iam_backends[match.group(2)]["aws"]
    return next((role for role in backend.get_roles() if role.arn == role_arn), None)


def _policy(document: Any) -> dict[str, Any]:
    if isinstance(document, dict):
        return document
    try:
        parsed = json.loads(unquote(str(document or "{}")))
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def trusts(policy: Mapping[str, Any], *, caller: Caller, external_id: str | None) -> bool:
    """Whether a trust policy lets ``caller`` assume the role: an Allow matches and no Deny does."""
    context = {"sts:externalid": external_id, "aws:principalaccount": caller.account, "aws:principalarn": caller.arn}
    allowed = False
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or not _matches(statement, caller=caller, context=context):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _matches(statement: Mapping[str, Any], *, caller: Caller, context: Mapping[str, str | None]) -> bool:
    actions = [str(a).lower() for a in _listed(statement.get("Action"))]
    if not any(fnmatch.fnmatchcase("sts:assumerole", action) for action in actions):
        return False
    if not _principal_matches(statement.get("Principal"), caller):
        return False
    return _conditions_hold(statement.get("Condition") or {}, context)


def _principal_matches(principal: Any, caller: Caller) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for entry in _listed(principal.get("AWS")):
        name = str(entry)
        if name in ("*", caller.account, caller.arn, f"arn:aws:iam::{caller.account}:root"):
            return True
    return False


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "stringequals": lambda value, wanted: value == wanted,
    "stringnotequals": lambda value, wanted: value != wanted,
    "stringlike": lambda value, wanted: fnmatch.fnmatchcase(value, wanted),
    "stringnotlike": lambda value, wanted: not fnmatch.fnmatchcase(value, wanted),
}
_NEGATED = {"stringnotequals", "stringnotlike"}


def _conditions_hold(conditions: Any, context: Mapping[str, str | None]) -> bool:
    if not isinstance(conditions, dict):
        return False
    for operator, checks in conditions.items():
        name = str(operator).lower()
        if_exists = name.endswith("ifexists")
        name = name.removesuffix("ifexists")
        test = _OPERATORS.get(name)
        if test is None or not isinstance(checks, dict):
            return False  # an operator the emulator does not know: never a false allow
        for key, wanted in checks.items():
            lowered = str(key).lower()
            if lowered not in context:
                return False
            value = context[lowered]
            if value is None:
                if if_exists:
                    continue
                return False
            hits = [test(value, str(w)) for w in _wanted(wanted)]
            # A negated operator holds when the value matches none; a positive one when it matches any.
            if not (all(hits) if name in _NEGATED else any(hits)):
                return False
    return True


def _wanted(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else [value]


__all__ = ["Caller", "StrictSts", "caller_of", "sts_error", "trusts"]
