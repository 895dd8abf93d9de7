"""The one-click gate over a real socket: a promote link taken from a delivered Slack message works
once; GET (a link-preview bot) never acts; a replay answers 409 at once; tampered, wrong-key and
expired links are refused; the engine's refusal and failure are passed on; the pages are not cached
and leak no Referer."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from controller.core.types import Verb
from controller.notify import SubmitResult, Transition, Trigger, build_notifier, parse_notifications
from controller.notify.links import GateSigner, gate_routes
from controller.notify.secrets import SecretReader
from tests.integration.receiver import Receiver

KEY = "gate-integration-key-0123456789abcdef-0123"
WAITING = Transition(
    namespace="payments",
    name="brand-api",
    function_name="brand-api",
    alias="prod",
    trigger=Trigger.WAITING_FOR_PROMOTION,
    attempt="44@1767226000",
    at=1767226000.0,
    version="44",
    stable_version="43",
    weight=25,
    step=2,
    steps=4,
    discriminator="2",
)


@dataclass
class Engine:
    """Stands in for the engine's side of ``submit``: records requests, refuses or fails on demand."""

    requests: list[dict[str, object]] = field(default_factory=list)
    refuse: str = ""
    fail: bool = False

    async def __call__(
        self, *, rollout_key: str, verb: Verb, request_id: str, by: str, attempt: str, step: int
    ) -> SubmitResult:
        if self.fail:
            raise ConnectionError("the record store is unreachable")
        if self.refuse:
            return SubmitResult(accepted=False, message=self.refuse)
        self.requests.append(
            {"rollout": rollout_key, "verb": verb, "id": request_id, "by": by, "attempt": attempt, "step": step}
        )
        return SubmitResult(accepted=True)


@dataclass
class Clock:
    now: float = 1767226000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gate:
    url: str
    engine: Engine
    clock: Clock
    signer: GateSigner
    http: aiohttp.ClientSession


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    engine, clock = Engine(), Clock()
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    # The signer needs the server's address for its links: start on a free port, then add the routes.
    probe = web.AppRunner(web.Application())
    await probe.setup()
    site = web.TCPSite(probe, "127.0.0.1", 0)
    await site.start()
    port = probe.addresses[0][1]
    await probe.cleanup()
    signer = GateSigner(key=KEY.encode(), base_url=f"http://127.0.0.1:{port}", ttl=600)
    app.add_routes(gate_routes(signer, engine, clock=clock))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        yield Gate(f"http://127.0.0.1:{port}", engine, clock, signer, http)
    await runner.cleanup()


async def fetch(gate: Gate, method: str, url: str) -> tuple[int, str, dict[str, str]]:
    async with gate.http.request(method, url, allow_redirects=False) as response:
        return response.status, await response.text(), dict(response.headers)


async def test_a_link_from_a_delivered_message_works_once_and_get_never_acts(gate: Gate) -> None:
    async with Receiver() as receiver:
        text = f"""\
targets: [{{name: team, slack: {{urlFrom: {{env: SLACK_URL}}}}}}]
subscriptions: [{{target: team, on: [WaitingForPromotion]}}]
links: {{baseUrl: '{gate.url}', signingKeyFrom: {{env: GATE_KEY}}, ttl: 10m}}
"""
        config, errors = parse_notifications(text, file="n.yaml")
        assert errors == [] and config is not None
        environ = {"SLACK_URL": f"{receiver.url}/services/T/B/X", "GATE_KEY": KEY}
        async with build_notifier(config, secrets=SecretReader(environ=environ), clock=gate.clock) as notifier:
            notifier.offer(WAITING)
            await asyncio.wait_for(notifier.idle(), 10)
    (message,) = receiver.received
    (actions,) = [block for block in message.json()["blocks"] if block["type"] == "actions"]
    promote = next(button["url"] for button in actions["elements"] if button["text"]["text"] == "Promote")
    assert promote.startswith(f"{gate.url}/v1/gate/")

    # A HEAD and a chat client unfurling the link twice: a page, never an action.
    for method in ("HEAD", "GET", "GET"):
        status, page, headers = await fetch(gate, method, promote)
        assert status == 200
    assert "Promote <b>payments/brand-api</b>" in page and "<form method='post'>" in page
    assert "Issued to <b>team</b>" in page
    assert headers["Cache-Control"] == "no-store" and headers["Referrer-Policy"] == "no-referrer"
    assert gate.engine.requests == []

    status, page, _ = await fetch(gate, "POST", promote)
    assert status == 200 and "Promote requested" in page
    (request,) = gate.engine.requests
    assert request["rollout"] == "payments/brand-api" and request["verb"] == Verb.PROMOTE
    assert (request["by"], request["attempt"], request["step"]) == ("link:team", "44@1767226000", 2)
    assert str(request["id"]).startswith("gate-")

    # A replay, by POST or by GET, is answered at once: the engine hears nothing more.
    status, page, _ = await fetch(gate, "POST", promote)
    assert status == 409 and "already used" in page
    status, page, _ = await fetch(gate, "GET", promote)
    assert status == 409
    assert len(gate.engine.requests) == 1


async def test_tampered_wrong_key_expired_and_malformed_links_are_refused(gate: Gate) -> None:
    links = gate.signer.links_for(WAITING, approver="team", now=gate.clock())
    assert links is not None
    # Someone turns their abort link into a promote link, keeping the signature.
    payload, mac = links.abort.rsplit("/", 1)[1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, "x": "promote"}).encode()).rstrip(b"=").decode()
    tampered = f"{gate.url}/v1/gate/{forged}.{mac}"
    other = GateSigner(key=b"another-controller-key-0123456789abcdef", base_url=gate.url, ttl=600)
    foreign = other.links_for(WAITING, approver="team", now=gate.clock())
    assert foreign is not None
    for url, status, words in (
        (tampered, 403, "altered"),
        (foreign.abort, 403, "signed with another key"),
        (f"{gate.url}/v1/gate/not-a-token", 400, "malformed"),
    ):
        for method in ("GET", "POST"):
            got, page, _ = await fetch(gate, method, url)
            assert (got, words in page) == (status, True), (url, method)
    gate.clock.now += 600
    got, page, _ = await fetch(gate, "POST", links.abort)
    assert got == 410 and "expired at" in page
    assert gate.engine.requests == []


async def test_the_engines_refusal_and_failure_are_passed_on(gate: Gate) -> None:
    links = gate.signer.links_for(WAITING, approver="team", now=gate.clock())
    assert links is not None
    gate.engine.fail = True
    status, _, _ = await fetch(gate, "POST", links.promote)
    assert status == 503
    # A failed submission did not use the link up.
    gate.engine.fail = False
    gate.engine.refuse = "payments/brand-api is no longer waiting at step 2 of attempt 44@1767226000"
    status, page, _ = await fetch(gate, "POST", links.promote)
    assert status == 409 and "no longer waiting at step 2" in page
    gate.engine.refuse = ""
    status, _, _ = await fetch(gate, "POST", links.abort)
    assert status == 200
    assert [request["verb"] for request in gate.engine.requests] == [Verb.ABORT]
