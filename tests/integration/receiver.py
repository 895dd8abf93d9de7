"""A local HTTP receiver on a real socket for notification tests: scripted answers, every request kept.

Each path answers from its own script of ``Answer`` (status, headers, or ``hang`` to never answer);
when a script runs out the path answers 200. Access logging is off: the paths of Slack-like URLs
are the secrets the tests check never reach a log line.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Use as ``async with Receiver() as receiver``; ``receiver.url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {}
        self.received: list[Received] = []
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._hung: list[asyncio.Event] = []

    def script(self, path: str, *answers: Answer) -> None:
        self.scripts.setdefault(path, []).extend(answers)

    def at(self, path: str) -> list[Received]:
        return [request for request in self.received if request.path == path]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        loop = asyncio.get_running_loop()
        self.received.append(Received(request.path, dict(request.headers), body, loop.time()))
        script = self.scripts.get(request.path) or []
        answer = script.pop(0) if script else Answer()
        if answer.hang:
            forever = asyncio.Event()
            self._hung.append(forever)
            await forever.wait()
        return web.Response(status=answer.status, headers=answer.headers, text="ok" if answer.status < 300 else "no")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for hung in self._hung:
            hung.set()
        if self._runner is not None:
            await self._runner.cleanup()
