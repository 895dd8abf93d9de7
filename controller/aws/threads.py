"""The worker threads boto3 calls run in: daemon threads, so a stuck call never holds up the exit.

boto3 is synchronous and its adaptive retry mode sleeps inside the call (a throttled ``UpdateAlias``
can take ~13 s to give up). Cancelling the asyncio task that awaits such a call does not stop the
thread, and both ``asyncio.run`` (it joins the default executor) and the interpreter (it joins every
``ThreadPoolExecutor`` worker) would wait for it, so SIGTERM could not exit within its 10 s. The
threads here are daemon threads that nobody joins: the process exits while a call is still retrying.
That is safe because every alias write is written ahead in the durable record (see
``controller.runtime.reconcile``): a write abandoned this way either landed or is completed by the
next controller.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["DaemonExecutor", "run_in_thread"]

T = TypeVar("T")

# As many threads as botocore keeps pooled connections (``max_pool_connections`` in session.py).
MAX_WORKERS = 32

_Work = tuple[Future[Any], Callable[[], Any]]


class DaemonExecutor:
    """A fixed-size pool of daemon threads, started lazily: one more only when none is idle."""

    def __init__(self, max_workers: int = MAX_WORKERS, *, name: str = "aws-call") -> None:
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._max_workers = max_workers
        self._name = name
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((future, fn))
        with self._lock:
            if self._idle == 0 and self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, fn = self._queue.get()
            with self._lock:
                self._idle -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting coroutine, as any executor does
                future.set_exception(exc)
            else:
                future.set_result(result)


_EXECUTOR = DaemonExecutor()


async def run_in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` on the daemon pool: awaiting it can be cancelled and the exit not delayed."""
    return await asyncio.wrap_future(_EXECUTOR.submit(functools.partial(fn, *args, **kwargs)))
