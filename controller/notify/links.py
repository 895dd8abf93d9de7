"""One-click gates: signed promote / abort links in a "waiting for promotion" message, and their HTTP handler.

A link is ``<baseUrl>/v1/gate/<token>``. The token is ``<claims>.<signature>``, both base64url
without padding: the claims are a compact JSON object binding the rollout key, its attempt, the step
it waits at, the verb (promote or abort), the approver (the target the link was issued to), the expiry
and a random nonce; the signature is HMAC-SHA256 over the encoded claims with the signing key. The
claims are readable by whoever holds the link (they say nothing secret); only the key can make them.

What makes a link safe to paste into a chat channel (``docs/notifications.md`` has the threat model):

- **GET never acts.** Chat clients and mail scanners fetch links to preview them; a GET shows a
  confirmation page whose button POSTs to the same URL. Only the POST calls ``submit``.
- **Usable once.** The nonce becomes the control request's id (``request_from``); the core handles a
  request id once and records it (``last_request``), and the token also binds the attempt and step,
  so the engine's ``submit`` refuses it once the rollout has moved on. Within one process a replay is
  answered 409 at once from ``UsedRequests``, without reaching the engine at all.
- **Bound and short-lived.** Tampering breaks the signature; an expired link is refused; rotating the
  signing key revokes every link issued before (refused as "signed with another key").
- **Attributed.** The request carries ``by = link:<approver>``, so history records who the link was
  issued to.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from controller.core.types import Verb

from .transition import Transition, Trigger, rfc3339

__all__ = [
    "GATE_PATH",
    "GATE_VERBS",
    "GateLinks",
    "GateRequest",
    "GateSigner",
    "Submit",
    "SubmitResult",
    "TokenProblem",
    "TokenRefused",
    "UsedRequests",
    "gate_routes",
]

GATE_PATH = "/v1/gate"
#: The only verbs a link can carry: the two a person waiting for promotion chooses between.
GATE_VERBS = (Verb.PROMOTE, Verb.ABORT)
# A token is a few hundred characters; anything much longer is not one of ours.
_MAX_TOKEN = 2048
# Domain separation: the same key could one day sign something else; this MAC means only "gate link v1".
_MAC_CONTEXT = b"lambda-rollouts gate v1\x00"
_KEY_ID_CONTEXT = b"lambda-rollouts gate key id\x00"
_REQUEST_ID_CONTEXT = b"lambda-rollouts gate request\x00"

log = logging.getLogger(__name__)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenProblem(enum.StrEnum):
    """Why a token was refused; ``status`` is the HTTP status the gate answers with."""

    MALFORMED = "malformed"
    WRONG_KEY = "wrong-key"
    TAMPERED = "tampered"
    EXPIRED = "expired"

    @property
    def status(self) -> int:
        return 410 if self is TokenProblem.EXPIRED else 400 if self is TokenProblem.MALFORMED else 403


class TokenRefused(Exception):
    """``verify`` refused a token; ``problem`` says why, the message says it to a person."""

    def __init__(self, problem: TokenProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class GateLinks:
    """The two links issued to one target for one transition, and when they stop working."""

    promote: str
    abort: str
    expires_at: float


@dataclass(frozen=True)
class GateRequest:
    """What a verified token asks for, as a control request: the core handles ``request_id`` once."""

    rollout_key: str
    verb: Verb
    request_id: str
    by: str
    attempt: str
    step: int
    expires_at: float


@dataclass(frozen=True)
class SubmitResult:
    """The engine's answer to a gate request: accepted, or refused with a reason a person can read."""

    accepted: bool
    message: str = ""


class Submit(Protocol):
    """Hands a gate request to the engine as a control request (``promote`` / ``abort``).

    It must refuse (``accepted=False``) a request whose rollout is not at ``attempt`` any more or,
    for a promote, not waiting at ``step`` (1-based): that is what keeps a link from acting twice.
    """

    async def __call__(
        self, *, rollout_key: str, verb: Verb, request_id: str, by: str, attempt: str, step: int
    ) -> SubmitResult: ...


class GateSigner:
    """Signs and verifies gate tokens with one key; ``clock`` and ``nonce`` are injectable for tests."""

    def __init__(
        self,
        *,
        key: bytes,
        base_url: str,
        ttl: float,
        nonce: Callable[[], str] = lambda: secrets.token_urlsafe(16),
    ) -> None:
        self._key = key
        self._base_url = base_url.rstrip("/")
        self._ttl = ttl
        self._nonce = nonce
        # Names the key without revealing it, so a link signed with an old key is told apart from a forged one.
        self.key_id = hashlib.sha256(_KEY_ID_CONTEXT + key).hexdigest()[:8]

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, _MAC_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()

    def sign(self, *, rollout_key: str, attempt: str, step: int, verb: Verb, approver: str, expires_at: float) -> str:
        """A token for ``verb`` on the rollout's ``attempt`` waiting at ``step``, issued to ``approver``."""
        if verb not in GATE_VERBS:
            raise ValueError(f"a gate link cannot carry {verb.value!r}")
        claims = {
            "v": 1,
            "r": rollout_key,
            "a": attempt,
            "s": step,
            "x": verb.value,
            "p": approver,
            "e": int(expires_at),
            "n": self._nonce(),
            "k": self.key_id,
        }
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        return f"{payload}.{_b64encode(self._mac(payload))}"

    def url(self, token: str) -> str:
        return f"{self._base_url}{GATE_PATH}/{token}"

    def links_for(self, transition: Transition, *, approver: str, now: float) -> GateLinks | None:
        """Promote and abort links for a transition waiting for promotion; None for any other trigger."""
        if transition.trigger != Trigger.WAITING_FOR_PROMOTION:
            return None
        expires_at = float(int(now + self._ttl))

        def link(verb: Verb) -> str:
            token = self.sign(
                rollout_key=transition.rollout_key,
                attempt=transition.attempt,
                step=transition.step,
                verb=verb,
                approver=approver,
                expires_at=expires_at,
            )
            return self.url(token)

        return GateLinks(promote=link(Verb.PROMOTE), abort=link(Verb.ABORT), expires_at=expires_at)

    def verify(self, token: str, *, now: float) -> dict[str, Any]:
        """The token's claims; raises ``TokenRefused`` for a malformed, tampered, wrong-key or expired token."""
        malformed = TokenRefused(TokenProblem.MALFORMED, "this is not a gate link (malformed token)")
        if len(token) > _MAX_TOKEN or token.count(".") != 1:
            raise malformed
        payload, signature = token.split(".")
        try:
            mac = _b64decode(signature)
            claims = json.loads(_b64decode(payload))
        except (binascii.Error, ValueError):
            raise malformed from None
        if (
            not isinstance(claims, dict)
            or len(mac) != hashlib.sha256().digest_size
            or not isinstance(claims.get("k"), str)
        ):
            raise malformed
        if not hmac.compare_digest(mac, self._mac(payload)):
            if claims["k"] != self.key_id:
                message = "this link was signed with another key: revoked by a key rotation, or from another controller"
                raise TokenRefused(TokenProblem.WRONG_KEY, message)
            raise TokenRefused(TokenProblem.TAMPERED, "this link was altered: its signature does not match")
        expected = {"r": str, "a": str, "s": int, "x": str, "p": str, "e": int, "n": str}
        if any(not isinstance(claims.get(key), kind) for key, kind in expected.items()):
            raise malformed
        if claims.get("v") != 1 or claims["x"] not in {verb.value for verb in GATE_VERBS}:
            raise malformed
        if now >= claims["e"]:
            raise TokenRefused(TokenProblem.EXPIRED, f"this link expired at {rfc3339(claims['e'])}")
        return claims

    def request_from(self, token: str, *, now: float) -> GateRequest:
        """The control request a valid token stands for (``verify`` first; raises ``TokenRefused`` likewise)."""
        claims = self.verify(token, now=now)
        digest = hashlib.sha256(_REQUEST_ID_CONTEXT + str(claims["n"]).encode("utf-8")).hexdigest()
        return GateRequest(
            rollout_key=claims["r"],
            verb=Verb(claims["x"]),
            request_id=f"gate-{digest[:24]}",
            by=f"link:{claims['p']}",
            attempt=claims["a"],
            step=claims["s"],
            expires_at=float(claims["e"]),
        )


class UsedRequests:
    """Request ids this process has acted on, kept until their link expires (after that ``verify`` refuses it)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def claim(self, request_id: str, *, until: float, now: float) -> bool:
        """Mark ``request_id`` used; False when it already was."""
        for stale in [rid for rid, expiry in self._until.items() if expiry <= now]:
            del self._until[stale]
        if request_id in self._until:
            return False
        self._until[request_id] = until
        return True

    def release(self, request_id: str) -> None:
        """Forget ``request_id`` (its submission failed, so the link may be tried again)."""
        self._until.pop(request_id, None)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._until


# ---- the HTTP handler -------------------------------------------------------------------------------

# The page carries a capability in its URL: never cached, never sent on as a Referer, never framed.
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
_VERB_WORDS = {
    Verb.PROMOTE: ("Promote", "skip the pause it is waiting at"),
    Verb.ABORT: ("Abort", "roll back to stable"),
}


def _page(title: str, body: str, *, status: int) -> web.Response:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em}"
        "button{font-size:1.1em;padding:.5em 1.5em}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=document, content_type="text/html", status=status, headers=_HEADERS)


def _refused(refusal: TokenRefused) -> web.Response:
    return _page("Link refused", f"<p>{html.escape(refusal.message)}.</p>", status=refusal.problem.status)


def _used(request: GateRequest) -> web.Response:
    text = f"<p>This link was already used (request {html.escape(request.request_id)}). It works once.</p>"
    return _page("Already used", text, status=409)


def gate_routes(
    verifier: GateSigner,
    submit: Submit,
    *,
    clock: Callable[[], float] = time.time,
    used: UsedRequests | None = None,
) -> list[web.RouteDef]:
    """``GET`` (confirmation page) and ``POST`` (act) on ``/v1/gate/{token}``, to mount on the controller's server."""
    used_requests = used if used is not None else UsedRequests()

    async def confirm(request: web.Request) -> web.Response:
        try:
            gate = verifier.request_from(request.match_info["token"], now=clock())
        except TokenRefused as refusal:
            return _refused(refusal)
        if gate.request_id in used_requests:
            return _used(gate)
        word, effect = _VERB_WORDS[gate.verb]
        where = f"attempt {gate.attempt}" + (f", step {gate.step}" if gate.step else "")
        body = (
            f"<p>{word} <b>{html.escape(gate.rollout_key)}</b> ({html.escape(where)}): {effect}.</p>"
            f"<p>Issued to <b>{html.escape(gate.by.removeprefix('link:'))}</b>; "
            f"works once, until {rfc3339(gate.expires_at)}.</p>"
            f"<form method='post'><button type='submit'>{word} {html.escape(gate.rollout_key)}</button></form>"
        )
        return _page(f"{word} {gate.rollout_key}?", body, status=200)

    async def act(request: web.Request) -> web.Response:
        now = clock()
        try:
            gate = verifier.request_from(request.match_info["token"], now=now)
        except TokenRefused as refusal:
            log.info("gate link refused: %s", refusal.problem.value)
            return _refused(refusal)
        if not used_requests.claim(gate.request_id, until=gate.expires_at, now=now):
            return _used(gate)
        try:
            result = await submit(
                rollout_key=gate.rollout_key,
                verb=gate.verb,
                request_id=gate.request_id,
                by=gate.by,
                attempt=gate.attempt,
                step=gate.step,
            )
        except Exception as error:
            used_requests.release(gate.request_id)
            log.warning(
                "gate %s for %s could not be submitted: %s", gate.verb.value, gate.rollout_key, type(error).__name__
            )
            return _page(
                "Try again", "<p>The request could not be handed to the controller. Try again.</p>", status=503
            )
        word, _ = _VERB_WORDS[gate.verb]
        if not result.accepted:
            log.info("gate %s for %s refused by the controller: %s", gate.verb.value, gate.rollout_key, result.message)
            return _page("Not applied", f"<p>{html.escape(result.message)}</p>", status=409)
        log.info(
            "gate %s for %s requested %s (request %s)", gate.verb.value, gate.rollout_key, gate.by, gate.request_id
        )
        body = (
            f"<p>{word} of <b>{html.escape(gate.rollout_key)}</b> requested as {html.escape(gate.by)} "
            f"(request {html.escape(gate.request_id)}). The controller acts on it at its next tick.</p>"
        )
        return _page(f"{word} requested", body, status=200)

    path = f"{GATE_PATH}/{{token}}"
    return [web.get(path, confirm), web.post(path, act)]
