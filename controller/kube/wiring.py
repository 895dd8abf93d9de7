"""kopf's part: login, the watch handlers, and the process that runs the operator beside kopf.

The only module that imports kopf, and it uses little of it: kopf watches the resources (list and
watch, reconnects, discovery, login) and hands every event to the operator, which writes nothing
from the handlers (no finalizers, no progress annotations, no Events of kopf's own). Leadership is a
Lease of our own (``controller.kube.lease``), not kopf's peering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from controller.kube.api import Endpoint, decode_ca
from controller.kube.names import GROUP, PLURAL, VERSION
from controller.kube.operator import Operator

logger = logging.getLogger("controller.kube")
# Seconds between checks that the resources can be listed, until they can (readiness).
LIST_RETRY = 2.0


Login = Callable[[], Awaitable[kopf.ConnectionInfo]]


async def default_login() -> kopf.ConnectionInfo:
    """In a pod: the service account; elsewhere: the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``)."""
    settings = kopf.OperatorSettings()
    connection = kopf.login_with_service_account(settings=settings, logger=logger) or kopf.login_with_kubeconfig(
        settings=settings, logger=logger
    )
    if connection is None:
        raise kopf.LoginError("no Kubernetes credentials: neither a service account nor a kubeconfig")
    return connection


def endpoint_of(info: kopf.ConnectionInfo) -> Endpoint:
    return Endpoint(
        server=info.server,
        token=info.token,
        insecure=bool(info.insecure),
        ca_path=_path_or_none(info.ca_path),
        ca_data=decode_ca(info.ca_data),
        certificate_path=_path_or_none(info.certificate_path),
        private_key_path=_path_or_none(info.private_key_path),
    )


def _path_or_none(path: Any) -> str | None:
    return os.fsdecode(path) if path else None


def build_registry(operator: Operator, login: Login) -> kopf.OperatorRegistry:
    """kopf handlers for one operator instance (a registry each: tests run two in one process)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return await login()

    @kopf.on.startup(registry=registry)
    async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events are ours to post (by the leader); kopf must not post its own from every replica.
        settings.posting.enabled = False
        # Only exact namespaces are watched: no namespace scanning (no globs to resolve).
        settings.scanning.disabled = bool(operator.settings.namespaces)
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 30

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def _event(event: Mapping[str, Any], body: kopf.Body, **_: Any) -> None:
        operator.watched(event.get("type"), dict(body))

    return registry


async def run_operator(
    *,
    operator: Operator,
    login: Login,
    stop: asyncio.Event,
) -> None:
    """kopf, the leader election and the operator, until ``stop`` (or until kopf itself exits).

    The shutdown order is ours, not kopf's: the engine first (its writes in flight finish within
    its grace, while the elector still renews the Lease: releasing it would cancel them), then the
    Lease is released, and only then is kopf stopped. Left to itself, kopf would stop first on
    SIGTERM (in the main thread it replaces the process's handlers with its own), then wait 5 s for
    every task it did not start (the engine's among them: "hung" to kopf) and cancel them, so a
    clean stop would lose the engine's grace and hand over 5 s late.
    """
    registry = build_registry(operator, login)
    namespaces = operator.settings.namespaces
    kopf_ready = asyncio.Event()
    # The elector keeps renewing while the engine finishes its writes; it releases only after.
    release = asyncio.Event()
    kopf_stop = asyncio.Event()
    existing = asyncio.all_tasks()
    kopf_tasks = await kopf.spawn_tasks(
        registry=registry,
        standalone=True,  # leadership is ours (a Lease), not kopf peering
        clusterwide=not namespaces,
        namespaces=namespaces,
        stop_flag=kopf_stop,
        ready_flag=kopf_ready,
        memo=kopf.Memo(),
    )
    _handle_signals(stop)
    elector_task = asyncio.create_task(operator.elector.run(release))
    operator_task = asyncio.create_task(operator.run(stop))
    # Not kopf's to cancel: they end before kopf is stopped (and so do the engines they start).
    ignored = existing | {elector_task, operator_task}
    kopf_task = asyncio.create_task(kopf.run_tasks(kopf_tasks, ignored=ignored))
    loaded = asyncio.create_task(_mark_loaded(operator, kopf_ready))
    tasks = {kopf_task, elector_task, operator_task}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loaded.cancel()
        stop.set()
        # The operator first (its engine finishes in-flight writes), then the lease, then kopf.
        await asyncio.gather(operator_task, return_exceptions=True)
        release.set()
        await asyncio.gather(elector_task, return_exceptions=True)
        kopf_stop.set()
        await asyncio.gather(kopf_task, return_exceptions=True)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _mark_loaded(operator: Operator, kopf_ready: asyncio.Event) -> None:
    """The source counts as loaded (readiness) once kopf runs *and* the resources can be listed.

    kopf's ready flag only says it has started: with the list refused (RBAC) or the CRD not served
    it retries its listing in the background, watching nothing, and a replica in that state must
    not report itself ready.
    """
    await kopf_ready.wait()
    while not await operator.listable():
        await asyncio.sleep(LIST_RETRY)
    operator.source.loaded = True


def _handle_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (kopf has just put its own handlers in their place)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Only the main thread may handle signals (tests run operators in threads: nothing to undo).
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
