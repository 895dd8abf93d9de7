"""Webhook receivers on real sockets for the tests that run the daemon as a subprocess.

``Receiver`` is a threaded ``http.server`` (the tests are synchronous: they drive subprocesses and
poll) that keeps every request, in arrival order, and answers each path from its own script: a status
with headers (500, 429 with ``Retry-After``), a connection closed without an answer (``drop``), or no
answer at all (``hang``). When a path's script runs out it answers 200. ``on_request`` runs in the
handler thread before the answer, so a test can act at the very instant a message arrives (SIGKILL
the daemon before it hears the 200). It can be stopped and started again on the same port: a receiver
that is down, then back.

``Silent`` is the dead receiver that hurts most: it accepts connections and never says a word, so
every attempt lasts until the sender's own timeout. A port nobody listens on (``free_port``) is the
other dead receiver: connections are refused at once.

Access logging is off: the paths of Slack-like URLs are the secrets the tests check never leak.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Answer:
    """How to answer one request: ``status`` with ``headers``; or ``drop`` the connection; or ``hang``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    hang: bool = False


@dataclass(frozen=True)
class Received:
    """One request as it arrived: ``path`` with its query, headers, raw body, ``at`` (monotonic seconds)."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung handler must never keep the test process alive
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as webhook receivers answer; aiohttp reuses connections

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Received(self.path, dict(self.headers.items()), body, time.monotonic())
        answer = receiver._record(request)
        if receiver.on_request is not None:
            receiver.on_request(request)
        if answer.hang:
            receiver._stopping.wait()
        if answer.drop or answer.hang:
            self.close_connection = True
            return
        text = b"ok" if answer.status < 300 else b"no"
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)


class Receiver:
    """``with Receiver() as receiver``: ``receiver.url`` is ``http://127.0.0.1:PORT``; ``port`` may be fixed."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[Received] = []
        self.on_request: Callable[[Received], object] | None = None
        self._scripts: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to ``path`` (its path part, without the query) with ``answers``, in order."""
        with self._lock:
            self._scripts.setdefault(path, []).extend(answers)

    def _record(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            script = self._scripts.get(request.path.partition("?")[0]) or []
            return script.pop(0) if script else Answer()

    def at(self, path: str) -> list[Received]:
        """The requests to ``path`` (without the query), in arrival order."""
        with self._lock:
            return [request for request in self.received if request.path.partition("?")[0] == path]

    def wait_for(self, check: Callable[[], bool], *, timeout: float = 20.0, what: str = "requests") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                paths = [request.path.partition("?")[0] for request in self.received]
                raise AssertionError(f"{what} not received within {timeout}s; got {paths}")
            time.sleep(0.02)  # polling cadence

    def start(self) -> None:
        self._stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # hung requests end (their connections close unanswered)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class Silent:
    """Accepts every connection and never answers; ``connections`` counts them."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.connections = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                connection, _ = self._listener.accept()
                self._held.append(connection)
                self.connections += 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        # shutdown() wakes the accept() the thread is blocked in; close() alone would not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        for connection in self._held:
            connection.close()
