"""One-click gate tokens: what they bind, and every way a token is refused (tampered, expired, wrong
key, malformed); the request they stand for; the used-once memory of the HTTP handler."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json

import pytest

from controller.core.types import Verb
from controller.notify.links import GateSigner, TokenProblem, TokenRefused, UsedRequests
from controller.notify.transition import Transition, Trigger
from controller.observability.logs import redact

KEY = b"0123456789abcdef0123456789abcdef"
NOW = 1767225600.0
WAITING = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.WAITING_FOR_PROMOTION,
    attempt="43@1767225000",
    at=NOW,
    version="43",
    step=2,
    steps=4,
)


def signer(key: bytes = KEY) -> GateSigner:
    counter = itertools.count()
    return GateSigner(
        key=key, base_url="https://rollouts.example.com/", ttl=3600, nonce=lambda: f"nonce-{next(counter)}"
    )


def token_of(url: str) -> str:
    prefix = "https://rollouts.example.com/v1/gate/"
    assert url.startswith(prefix)
    return url.removeprefix(prefix)


def refusal(gate: GateSigner, token: str, *, now: float = NOW) -> TokenProblem:
    with pytest.raises(TokenRefused) as raised:
        gate.verify(token, now=now)
    return raised.value.problem


def test_links_only_for_a_rollout_waiting_for_promotion() -> None:
    gate = signer()
    links = gate.links_for(WAITING, approver="team", now=NOW)
    assert links is not None and links.expires_at == NOW + 3600
    for trigger in set(Trigger) - {Trigger.WAITING_FOR_PROMOTION}:
        assert gate.links_for(dataclasses.replace(WAITING, trigger=trigger), approver="team", now=NOW) is None


def test_a_token_binds_rollout_attempt_step_verb_approver_and_becomes_one_request() -> None:
    gate = signer()
    links = gate.links_for(WAITING, approver="team", now=NOW)
    assert links is not None
    promote = gate.request_from(token_of(links.promote), now=NOW + 10)
    abort = gate.request_from(token_of(links.abort), now=NOW + 10)
    assert (promote.rollout_key, promote.verb, promote.by, promote.attempt, promote.step) == (
        "payments/brand-api",
        Verb.PROMOTE,
        "link:team",
        "43@1767225000",
        2,
    )
    assert abort.verb == Verb.ABORT
    # The request id is derived from the nonce: stable for one link, different for each link.
    assert promote.request_id == gate.request_from(token_of(links.promote), now=NOW + 20).request_id
    assert promote.request_id != abort.request_id
    assert promote.request_id.startswith("gate-") and len(promote.request_id) == 29
    # URL-safe: nothing to escape in a path segment.
    assert all(c.isalnum() or c in "-_." for c in token_of(links.promote))


def test_tampered_tokens_are_refused() -> None:
    gate = signer()
    token = gate.sign(
        rollout_key="payments/brand-api",
        attempt="43@1",
        step=2,
        verb=Verb.PROMOTE,
        approver="team",
        expires_at=NOW + 60,
    )
    payload, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for change in ({"r": "search/other-api"}, {"x": "abort"}, {"e": NOW + 10**6}, {"p": "admin"}, {"s": 3}):
        forged = base64.urlsafe_b64encode(json.dumps({**claims, **change}).encode()).rstrip(b"=").decode()
        assert refusal(gate, f"{forged}.{mac}") == TokenProblem.TAMPERED
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    assert refusal(gate, f"{payload}.{flipped}") == TokenProblem.TAMPERED
    assert TokenProblem.TAMPERED.status == 403


def test_expired_tokens_are_refused_with_the_expiry() -> None:
    gate = signer()
    token = gate.sign(
        rollout_key="payments/brand-api", attempt="43@1", step=2, verb=Verb.ABORT, approver="team", expires_at=NOW + 60
    )
    gate.verify(token, now=NOW + 59)
    with pytest.raises(TokenRefused, match="expired at 2026-01-01T00:01:00Z") as raised:
        gate.verify(token, now=NOW + 60)
    assert raised.value.problem == TokenProblem.EXPIRED and raised.value.problem.status == 410


def test_a_token_signed_with_another_key_is_refused_as_such() -> None:
    old = signer(b"an-old-key-that-was-rotated-away!")
    token = old.sign(
        rollout_key="payments/brand-api", attempt="43@1", step=2, verb=Verb.PROMOTE, approver="t", expires_at=NOW + 60
    )
    assert refusal(signer(), token) == TokenProblem.WRONG_KEY
    assert old.key_id != signer().key_id and KEY.hex()[:8] not in signer().key_id


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "!!!.???", "e30.", "e30." + "A" * 43, "W10." + "A" * 43, "x" * 3000 + ".y"],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert refusal(signer(), token) == TokenProblem.MALFORMED


def test_only_promote_and_abort_can_be_signed() -> None:
    with pytest.raises(ValueError, match="cannot carry 'promote-bypass'"):
        signer().sign(rollout_key="a/b", attempt="1", step=0, verb=Verb.PROMOTE_BYPASS, approver="t", expires_at=NOW)


def test_used_requests_answer_a_replay_until_the_link_expires() -> None:
    used = UsedRequests()
    assert used.claim("gate-1", until=NOW + 60, now=NOW)
    assert not used.claim("gate-1", until=NOW + 60, now=NOW + 1)  # replay
    assert "gate-1" in used
    used.release("gate-1")  # a failed submission may be tried again
    assert used.claim("gate-1", until=NOW + 60, now=NOW + 2)
    # Past its expiry the token itself is refused, so the memory of it can go.
    assert used.claim("gate-2", until=NOW + 120, now=NOW + 61)
    assert "gate-1" not in used


def test_log_lines_never_show_a_gate_token() -> None:
    gate = signer()
    links = gate.links_for(WAITING, approver="team", now=NOW)
    assert links is not None
    token = token_of(links.promote)
    line = (
        f"POST {links.promote} 200; body Message=%7B%22u%22%3A%22https%3A%2F%2Fr.example.com%2Fv1%2Fgate%2F{token}%22"
    )
    redacted = redact(line)
    assert token not in redacted
    assert redacted.count("[REDACTED]") == 2
