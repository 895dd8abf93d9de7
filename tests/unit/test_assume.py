"""An assumed role's credentials are refreshed before they expire, on an injected clock.

``AssumedRole`` hands botocore refreshable credentials whose refresh runs ``AssumeRole`` on the event
loop while the signing thread waits. The clock is a variable here, so the test walks through the
thresholds (15 minutes before expiry: refresh, keep the old ones if it fails; 10 minutes: refresh or
fail the call) in microseconds, with an STS that counts and can be told to refuse.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from controller.aws.assume import ADVISORY_REFRESH, MANDATORY_REFRESH, AssumedRole, RoleTarget, session_name
from controller.aws.errors import AwsError
from controller.aws.sts import TemporaryCredentials

T0 = 1_800_000_000.0
HOUR = 3600


@dataclass
class Sts:
    """STS's side of AssumeRole: numbered keys valid for an hour from the clock's now."""

    clock: list[float]
    refuse: bool = False
    calls: list[dict[str, object]] = field(default_factory=list)

    async def assume_role(
        self, *, role_arn: str, session_name: str, external_id: str | None, duration: int
    ) -> TemporaryCredentials:
        self.calls.append({"role": role_arn, "session": session_name, "external_id": external_id})
        if self.refuse:
            raise AwsError(code="AccessDenied", message="not authorized", operation="AssumeRole")
        n = len(self.calls)
        return TemporaryCredentials(f"ASIA{n}", f"secret{n}", f"token{n}", expiration=self.clock[0] + duration)


def frozen_key(role: AssumedRole) -> str:
    return str(role.credentials.get_frozen_credentials().access_key)


async def signed_at(role: AssumedRole, clock: list[float], when: float) -> str:
    """The key a request signed at ``when`` uses (signing happens in a worker thread, as in a call)."""
    clock[0] = when
    return await asyncio.to_thread(frozen_key, role)


async def test_credentials_are_refreshed_fifteen_minutes_before_expiry() -> None:
    clock = [T0]
    sts = Sts(clock)
    refreshes: list[Exception | None] = []
    role = AssumedRole(
        sts=sts,
        target=RoleTarget("arn:aws:iam::111111111111:role/deployer", external_id="tenant-7", session_name="lr-a"),
        clock=lambda: clock[0],
        on_refresh=refreshes.append,
    )
    await role.start()
    expiry = T0 + HOUR
    assert await signed_at(role, clock, T0 + 60) == "ASIA1"
    assert await signed_at(role, clock, expiry - ADVISORY_REFRESH - 1) == "ASIA1"
    assert len(sts.calls) == 1
    assert await signed_at(role, clock, expiry - ADVISORY_REFRESH + 1) == "ASIA2"
    assert len(sts.calls) == 2
    assert sts.calls[1] == {
        "role": "arn:aws:iam::111111111111:role/deployer",
        "session": "lr-a",
        "external_id": "tenant-7",
    }
    assert refreshes == [None, None]
    # The new credentials count from the refresh: nothing more until their own advisory point.
    second_expiry = expiry - ADVISORY_REFRESH + 1 + HOUR
    assert await signed_at(role, clock, second_expiry - ADVISORY_REFRESH - 1) == "ASIA2"
    assert len(sts.calls) == 2


async def test_a_failed_refresh_keeps_the_credentials_until_the_mandatory_point() -> None:
    clock = [T0]
    sts = Sts(clock)
    refreshes: list[Exception | None] = []
    role = AssumedRole(
        sts=sts, target=RoleTarget("arn:aws:iam::1:role/r"), clock=lambda: clock[0], on_refresh=refreshes.append
    )
    await role.start()
    sts.refuse = True
    expiry = T0 + HOUR
    # Advisory: the refresh fails, the call goes on with the current credentials (still valid 14 min).
    assert await signed_at(role, clock, expiry - ADVISORY_REFRESH + 60) == "ASIA1"
    # Mandatory: a call may not be signed with credentials that close to expiry; it fails, loudly.
    with pytest.raises(AwsError, match="AccessDenied"):
        await signed_at(role, clock, expiry - MANDATORY_REFRESH + 60)
    assert [type(r).__name__ if r else None for r in refreshes] == [None, "AwsError", "AwsError"]
    # STS answers again: the next call refreshes and proceeds.
    sts.refuse = False
    assert await signed_at(role, clock, expiry - MANDATORY_REFRESH + 120) == "ASIA4"


async def test_a_role_that_cannot_be_assumed_fails_start() -> None:
    clock = [T0]
    role = AssumedRole(sts=Sts(clock, refuse=True), target=RoleTarget("arn:aws:iam::1:role/r"), clock=lambda: clock[0])
    with pytest.raises(AwsError, match="AccessDenied"):
        await role.start()
    with pytest.raises(RuntimeError, match="start"):
        _ = role.credentials


async def test_a_refresh_on_the_event_loop_thread_refuses_instead_of_hanging() -> None:
    clock = [T0]
    role = AssumedRole(sts=Sts(clock), target=RoleTarget("arn:aws:iam::1:role/r"), clock=lambda: clock[0])
    await role.start()
    clock[0] = T0 + HOUR - MANDATORY_REFRESH + 1
    with pytest.raises(RuntimeError, match="event loop"):
        role.credentials.get_frozen_credentials()


def test_session_names_fit_sts_rules() -> None:
    assert session_name("host-1:4242") == "lambda-rollouts-host-1-4242"
    assert len(session_name("x" * 100)) == 64
    assert "secret" not in repr(TemporaryCredentials("ASIA1", "secret", "token", 0.0))
    assert "tenant" not in repr(RoleTarget("arn:aws:iam::1:role/r", external_id="tenant-7"))
