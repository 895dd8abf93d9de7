"""The one path every AWS call takes: budget token, boto3 in a worker thread, error mapping, retries, observer.

boto3 is synchronous; the engine is asyncio and handles many rollouts at once, so each call runs in
a worker thread of ``controller.aws.threads`` (boto3 clients are thread-safe; the session that made
them is not, which is why ``make_clients`` builds every client up front); those are daemon threads, so
a call still retrying never delays the process's exit. Keeping the budget, the timing and the mapping of
botocore errors in one place means no adapter method can forget one of them, and the metrics see
every single request (each page of a paginated read is its own request, and each attempt of a retried
one, as AWS counts them). Transient failures are retried here, each attempt with a budget token of its
own (``controller.aws.retries``); botocore sends every request once.

``WriteFence`` is the last word on whether a write leaves the process: the engine's write gate is
asked before a write is started, but the call may then wait for a budget token, for botocore's
adaptive rate limiter and for its retries, seconds in all. The fence is asked again right before
each HTTP attempt is sent, so a replica that lost its lease meanwhile sends nothing more.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from controller.aws.budget import Budget
from controller.aws.errors import AwsError, Throttled, from_boto
from controller.aws.retries import CONNECTION, SERVER_ERROR, THROTTLED, FaultLog, RetryPolicy
from controller.aws.threads import run_in_thread

__all__ = ["ApiCaller", "ApiObserver", "WriteFence", "WriteFenced"]

T = TypeVar("T")


class ApiObserver(Protocol):
    """Told about every AWS request (for metrics). Must be cheap and must not raise."""

    def api_call(self, *, service: str, operation: str, outcome: str, seconds: float) -> None:
        """``outcome``: "ok" | "throttled" | "error" | "conflict" | "not_found"."""

    def budget_wait(self, *, family: str, seconds: float) -> None:
        """A call waited ``seconds`` for a token of ``family`` (only reported when it did wait)."""

    def api_retry(self, *, service: str, operation: str, reason: str) -> None:
        """An attempt failed transiently (``reason``: throttled | server_error | connection) and is retried."""


class WriteFenced(Exception):
    """A write was not sent: the fence was closed when its HTTP attempt was about to leave."""

    def __init__(self, operation: str) -> None:
        super().__init__("not sent: this replica no longer writes (its lease is lost)")
        self.operation = operation


def _open() -> bool:
    return True


class WriteFence:
    """Stops writes at the last moment, right before each HTTP attempt (botocore's retries included).

    ``gate`` is called from the worker thread that sends the request, so it must be cheap and
    thread-safe (reading a clock and a flag). Reads (``Get*``, ``List*``) always pass: a standby
    reads. ``Invoke`` passes too: a lifecycle hook is started only through the engine's gate, and
    cutting one off mid-way would read as the hook failing.
    """

    def __init__(self) -> None:
        self.gate: Callable[[], bool] = _open

    def install(self, client: Any) -> None:
        # Last among the ``before-send`` handlers: after botocore's adaptive rate limiter, which may sleep.
        client.meta.events.register_last("before-send", self._before_send)

    def _before_send(self, event_name: str = "", **_kwargs: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation.startswith(("Get", "List")) or operation == "Invoke":
            return
        if not self.gate():
            raise WriteFenced(operation)


def transient(exc: BaseException, error: AwsError) -> str | None:
    """Why a failed attempt is worth another one soon (a ``retries`` reason), or None when it is not."""
    if isinstance(error, Throttled):
        return THROTTLED
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return CONNECTION  # refused, reset, timed out: the request may not even have left
    if isinstance(exc, ClientError):
        status = int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        if status >= 500:
            return SERVER_ERROR
    return None


class ApiCaller:
    """Runs one boto3 client method under the budget, retries transient failures, reports every attempt;
    shared by the adapters."""

    def __init__(
        self,
        *,
        client: Any,
        service: str,
        budget: Budget,
        observer: ApiObserver | None,
        retry: RetryPolicy | None = None,
        faults: FaultLog | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.service = service
        self.budget = budget
        self.observer = observer
        self.retry = retry or RetryPolicy()
        self._faults = faults or FaultLog()
        self._sleep = sleep
        self._rand = rand

    async def call(self, operation: str, *, family: str, priority: bool = False, **params: Any) -> dict[str, Any]:
        """Call ``operation`` (AWS's name, e.g. ``"UpdateAlias"``) with ``params``; raise ``AwsError`` on failure.

        A transient failure (throttling, 5xx, a lost connection) is retried up to the policy's attempts,
        each attempt after a token of ``family``; the last one's error is raised.
        """
        method: Callable[..., dict[str, Any]] = getattr(self.client, _snake(operation))
        attempt = 1
        while True:
            waited = await self.budget.acquire(family, priority=priority)
            if waited > 0 and self.observer is not None:
                self.observer.budget_wait(family=family, seconds=waited)
            started = time.perf_counter()
            try:
                result = await run_in_thread(method, **params)
            except (ClientError, BotoCoreError, WriteFenced) as exc:
                error = from_boto(exc, operation=operation)
                self._report(operation, error.outcome, started)
                reason = transient(exc, error)
                again = reason is not None and attempt < self.retry.attempts
                if reason is not None:
                    self._faults.failed(family=family, reason=reason, retried=again)
                if not again:
                    error.transient = reason
                    raise error from exc
                if self.observer is not None:
                    self.observer.api_retry(service=self.service, operation=operation, reason=str(reason))
                await self._sleep(self.retry.delay(attempt, self._rand))
                attempt += 1
                continue
            self._report(operation, "ok", started)
            return result

    def _report(self, operation: str, outcome: str, started: float) -> None:
        if self.observer is not None:
            self.observer.api_call(
                service=self.service, operation=operation, outcome=outcome, seconds=time.perf_counter() - started
            )


def _snake(operation: str) -> str:
    # "GetFunctionConfiguration" -> "get_function_configuration"; botocore's own xform_name does the
    # same, but keeping AWS's names in our code makes the metrics labels match the AWS docs.
    return str(xform_name(operation))
