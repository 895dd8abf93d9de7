"""A small Kubernetes API client for the controller's own writes: status, Events, finalizers, Leases.

kopf watches the LambdaRollouts, but the writes the engine causes (status on every change, an Event
per transition, the leader Lease) happen outside kopf's handlers, on the engine's schedule. They go
through this client instead of kopf's internals, so ``controller.runtime`` never imports kopf. It
speaks plain JSON over aiohttp and knows nothing about credentials beyond an ``Endpoint``: the
Kubernetes source fills one from kopf's login (service account or kubeconfig), tests point it at
an emulated apiserver.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Endpoint:
    """Where the apiserver is and how to authenticate: the fields of a kubeconfig that matter here."""

    server: str
    token: str | None = None
    insecure: bool = False
    ca_path: str | None = None
    ca_data: bytes | None = None  # PEM
    certificate_path: str | None = None
    private_key_path: str | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            cadata = self.ca_data.decode() if self.ca_data else None
            context = ssl.create_default_context(cafile=self.ca_path, cadata=cadata)
        if self.certificate_path:
            context.load_cert_chain(self.certificate_path, self.private_key_path)
        return context


class ApiError(Exception):
    """A non-2xx answer; ``status`` is the HTTP code (409 conflict, 404 gone, 422 failed test...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


# Returns a fresh endpoint after a 401 (rotated service-account tokens); None keeps the old one.
Relogin = Callable[[], Awaitable[Endpoint | None]]


class KubeApi:
    """JSON requests against one apiserver; use as an async context manager."""

    def __init__(
        self, endpoint: Endpoint, *, relogin: Relogin | None = None, timeout: float = 10.0, user_agent: str = ""
    ) -> None:
        self.endpoint = endpoint
        # Names the replica in the apiserver's audit log (and lets tests tell two replicas apart).
        self._user_agent = user_agent or "lambda-rollouts"
        self._relogin = relogin
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeApi:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, path: str) -> dict[str, Any]:
        return await self.request("GET", path)

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", path, body)

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body, content_type=MERGE_PATCH)

    async def json_patch(self, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("PATCH", path, ops, content_type=JSON_PATCH)

    async def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> dict[str, Any]:
        try:
            return await self._request(method, path, body, content_type)
        except ApiError as exc:
            if exc.status != 401 or self._relogin is None:
                raise
            fresh = await self._relogin()
            if fresh is None:
                raise
            self.endpoint = fresh
            return await self._request(method, path, body, content_type)

    async def _request(self, method: str, path: str, body: Any, content_type: str) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("KubeApi is used outside its context")
        headers = {"Accept": "application/json", "Content-Type": content_type, "User-Agent": self._user_agent}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        data = json.dumps(body) if body is not None else None
        url = self.endpoint.server.rstrip("/") + path
        async with self._session.request(
            method, url, data=data, headers=headers, ssl=self.endpoint.ssl_context()
        ) as response:
            text = await response.text()
            if response.status >= 400:
                raise ApiError(response.status, _message(text))
            payload: dict[str, Any] = json.loads(text) if text else {}
            return payload


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:500]


def decode_ca(data: str | bytes | None) -> bytes | None:
    """kubeconfig's ``certificate-authority-data`` is base64 of PEM; kopf may hand either form."""
    if not data:
        return None
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN") else base64.b64decode(raw)
