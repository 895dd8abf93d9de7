"""Credentials of a role in another account: assumed with the controller's own, refreshed before expiry.

One controller serves several accounts by assuming one role per account (``spec.aws.roleArn`` or the
namespace's role in ``--accounts``). ``AssumedRole`` makes the first ``AssumeRole`` call itself
(``start``: a role that cannot be assumed is an ``AwsError`` the caller reports on that account's
rollouts, not a crash) and hands botocore a ``RefreshableCredentials`` that signs every call of that
account's clients.

Why botocore's refreshable credentials rather than a timer of our own: botocore checks the expiry
right before signing each request, so no request is ever signed with credentials past their
advisory point, whatever the event loop was doing; its two thresholds are the rule we want. From 15
minutes before expiry (``ADVISORY_REFRESH``) the first caller refreshes while the others go on with
the current credentials, and a failed refresh is only logged (the credentials still hold); from 10
minutes before (``MANDATORY_REFRESH``) every caller waits for fresh ones and a failure fails the
call, so the engine reports it on the rollout. Both are well over the 5 minutes of clock skew and
retries a refresh must fit in. An account whose clients make no call for an hour refreshes at its
next call: that is still before any request is signed.

botocore calls the refresh from the worker thread that signs the request (``controller.aws.threads``);
the refresh runs ``AssumeRole`` through the controller's own STS adapter on the event loop (so it
takes a token of the ``sts`` budget family and is counted in the metrics like any call) and the
thread waits for it. It must therefore never be called from the event loop's own thread, which would
wait for itself: it refuses, loudly, rather than hang. The clock is injectable (botocore's
``time_fetcher``), so tests move through the thresholds without waiting an hour.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.credentials import RefreshableCredentials

from controller.aws.sts import TemporaryCredentials

__all__ = [
    "ADVISORY_REFRESH",
    "DEFAULT_DURATION",
    "MANDATORY_REFRESH",
    "AssumedRole",
    "RoleAssumer",
    "RoleTarget",
    "session_name",
]

#: One hour: AWS's default and a role's default MaxSessionDuration.
DEFAULT_DURATION = 3600
ADVISORY_REFRESH = 15 * 60
MANDATORY_REFRESH = 10 * 60
#: How long a signing thread waits for a refresh before its call fails (botocore then retries it).
REFRESH_TIMEOUT = 30.0
_SESSION_CHARACTERS = re.compile(r"[^\w+=,.@-]")


class RoleAssumer(Protocol):
    """What ``AssumedRole`` needs of STS (``controller.aws.sts.StsAdapter``)."""

    async def assume_role(
        self, *, role_arn: str, session_name: str, external_id: str | None, duration: int
    ) -> TemporaryCredentials: ...


@dataclass(frozen=True)
class RoleTarget:
    """The role to assume and how: the external ID its trust policy asks for, and the session name
    that says in the target account's CloudTrail which controller this is."""

    role_arn: str
    external_id: str | None = field(default=None, repr=False)
    session_name: str = "lambda-rollouts"
    duration: int = DEFAULT_DURATION


def session_name(identity: str) -> str:
    """``lambda-rollouts-<identity>`` in the characters and length STS accepts (2-64 of ``[\\w+=,.@-]``)."""
    return f"lambda-rollouts-{_SESSION_CHARACTERS.sub('-', identity)}"[:64]


class AssumedRole:
    """The credentials of one assumed role, for the clients of one account (see the module docstring).

    ``on_refresh`` hears about every ``AssumeRole`` it makes: None when it succeeded, else the error.
    """

    def __init__(
        self,
        *,
        sts: RoleAssumer,
        target: RoleTarget,
        clock: Callable[[], float] = time.time,
        on_refresh: Callable[[Exception | None], None] | None = None,
    ) -> None:
        self.target = target
        self._sts = sts
        self._clock = clock
        self._on_refresh = on_refresh
        self._loop: asyncio.AbstractEventLoop | None = None
        self._credentials: RefreshableCredentials | None = None
        self.refreshes = 0

    async def start(self) -> None:
        """The first ``AssumeRole``; raises ``AwsError`` (AccessDenied ...) when the role cannot be assumed."""
        self._loop = asyncio.get_running_loop()
        fresh = await self._assume()
        self._credentials = RefreshableCredentials(
            access_key=fresh.access_key_id,
            secret_key=fresh.secret_access_key,
            token=fresh.session_token,
            expiry_time=_utc(fresh.expiration),
            refresh_using=self._refresh_from_thread,
            method="assume-role",
            time_fetcher=lambda: _utc(self._clock()),
            advisory_timeout=ADVISORY_REFRESH,
            mandatory_timeout=MANDATORY_REFRESH,
        )

    @property
    def credentials(self) -> RefreshableCredentials:
        """What the account's clients sign with (after ``start``)."""
        if self._credentials is None:
            raise RuntimeError("AssumedRole.start() has not succeeded yet")
        return self._credentials

    async def _assume(self) -> TemporaryCredentials:
        target = self.target
        try:
            fresh = await self._sts.assume_role(
                role_arn=target.role_arn,
                session_name=target.session_name,
                external_id=target.external_id,
                duration=target.duration,
            )
        except Exception as exc:
            if self._on_refresh is not None:
                self._on_refresh(exc)
            raise
        self.refreshes += 1
        if self._on_refresh is not None:
            self._on_refresh(None)
        return fresh

    def _refresh_from_thread(self) -> dict[str, Any]:
        """botocore's ``refresh_using``: runs ``AssumeRole`` on the event loop and waits for it."""
        loop = self._loop
        if loop is None or loop.is_closed():
            raise RuntimeError("credentials cannot be refreshed: the event loop is gone")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("credentials refreshed on the event loop's own thread would wait for themselves")
        fresh = asyncio.run_coroutine_threadsafe(self._assume(), loop).result(timeout=REFRESH_TIMEOUT)
        return {
            "access_key": fresh.access_key_id,
            "secret_key": fresh.secret_access_key,
            "token": fresh.session_token,
            "expiry_time": _utc(fresh.expiration).isoformat(),
        }


def _utc(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)
