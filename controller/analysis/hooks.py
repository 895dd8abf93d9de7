"""Lifecycle hook providers: invoke a Lambda function, or POST to a URL.

A hook (``spec.hooks.beforeAllowTraffic`` / ``afterAllowTraffic``) is ``{function: NAME_OR_ARN}`` or
``{url: https://...}``, bounded by ``timeout``. Both get the same JSON payload describing the rollout
(``hook_payload``), so one hook implementation can serve either way of calling it:

- **function**: a synchronous Invoke (through ``LambdaAdapter.invoke``, under the API budget and the
  metrics observer). Success = no ``FunctionError`` and, if the answer is a JSON object with a
  ``status`` field, a status in ``SUCCESS_STATUSES``; anything else fails, with the reason.
- **url**: an HTTP POST of the payload (aiohttp); any 2xx answer is success.

Hooks may run more than once for the same rollout (a controller that dies while a hook runs asks
for it again), so they must be idempotent.

``HookRunner`` runs them beside the reconciles, never inside one: a reconcile that is handed a
``RunHook`` only starts it (``start``) and returns, the runner reports it as running until its answer
comes, then keeps the answer until a reconcile has handed it to the core and persisted what the core
made of it (``delivered``). So a hook that takes its whole timeout, or never answers, holds back no
alarm, no ``abort`` and no progress deadline of its rollout: every tick meanwhile is an ordinary
reconcile. The answer of a hook whose attempt ended meanwhile is still handed over; the core ignores it
and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from controller.analysis import Evidence, Result, Subject
from controller.aws.errors import AwsError
from controller.aws.lambda_ import LambdaAdapter
from controller.core.types import HookAnswer, RunHook, Verdict
from controller.document.model import Hook, RolloutSpec

#: ``status`` values of a hook function's JSON answer that mean success.
SUCCESS_STATUSES = frozenset({"Succeeded", "Success", "ok"})
# Quoted answers are cut: the reason ends up in the record, the status and Events.
_QUOTE = 120


def hook_payload(spec: RolloutSpec, action: RunHook) -> dict[str, object]:
    """What a hook is told: which rollout, which versions, which hook."""
    return {
        "hook": action.name,
        "functionName": spec.function_name,
        "alias": spec.alias,
        "stableVersion": action.stable,
        "newVersion": action.version,
        "rollout": {"namespace": spec.namespace, "name": spec.name},
    }


def _quote(data: bytes) -> str:
    text = data.decode("utf-8", "replace").strip()
    return text if len(text) <= _QUOTE else text[: _QUOTE - 3] + "..."


def judge_invocation(function_error: str | None, payload: bytes) -> Result:
    """A hook function's answer as a verdict (pure, so the rule is tested on its own)."""
    if function_error:
        return Result(Verdict.FAILED, f"function error {function_error}: {_quote(payload)}")
    try:
        answer: Any = json.loads(payload) if payload.strip() else None
    except ValueError:
        answer = None
    if isinstance(answer, dict) and "status" in answer:
        status = answer["status"]
        if status in SUCCESS_STATUSES:
            return Result(Verdict.SUCCESSFUL, f"status {status}")
        return Result(Verdict.FAILED, f"status {status}: {_quote(payload)}")
    return Result(Verdict.SUCCESSFUL, "no function error")


@dataclass(frozen=True)
class FunctionHook:
    """Invoke a Lambda function synchronously, within ``timeout`` seconds."""

    lambda_: LambdaAdapter
    function: str
    timeout: float

    async def run(self, payload: dict[str, object]) -> Result:
        body = json.dumps(payload).encode()
        try:
            answer = await self.lambda_.invoke(self.function, body, timeout=self.timeout)
        except TimeoutError:
            return Result(Verdict.FAILED, f"no answer from function {self.function} within {self.timeout:g}s")
        except AwsError as exc:
            return Result(Verdict.FAILED, f"invoking {self.function} failed: {exc}")
        return judge_invocation(answer.function_error, answer.payload)


@dataclass(frozen=True)
class UrlHook:
    """POST the payload to ``url``; any 2xx answer within ``timeout`` seconds is success."""

    url: str
    timeout: float

    async def run(self, payload: dict[str, object]) -> Result:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session,
                session.post(self.url, json=payload) as response,
            ):
                text = _quote(await response.read())
                if 200 <= response.status < 300:
                    return Result(Verdict.SUCCESSFUL, f"HTTP {response.status}")
                return Result(Verdict.FAILED, f"HTTP {response.status} from {self.url}: {text}")
        except TimeoutError:
            return Result(Verdict.FAILED, f"no answer from {self.url} within {self.timeout:g}s")
        except aiohttp.ClientError as exc:
            return Result(Verdict.FAILED, f"POST {self.url} failed: {type(exc).__name__}: {exc}")


class HookCall(Protocol):
    """One way of asking a hook (a function, a URL); never raises for a bad answer."""

    async def run(self, payload: dict[str, object]) -> Result: ...


def provider_for(hook: Hook, *, lambda_: LambdaAdapter) -> HookCall:
    """The provider a hook declares (the schema guarantees exactly one of ``function`` / ``url``)."""
    if hook.function:
        return FunctionHook(lambda_, hook.function, hook.timeout)
    if hook.url:
        return UrlHook(hook.url, hook.timeout)
    raise ValueError("a hook needs `function` or `url`")


async def run_hook(spec: RolloutSpec, action: RunHook, *, lambda_: LambdaAdapter) -> Result:
    """Run ``action``'s hook for ``spec``'s rollout; never raises for a failing hook."""
    provider = provider_for(action.hook, lambda_=lambda_)
    try:
        return await provider.run(hook_payload(spec, action))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a provider bug must fail the hook with a reason, not kill the reconcile
        return Result(Verdict.FAILED, f"hook could not run: {type(exc).__name__}: {exc}")


# A provider bounds its own call by ``hook.timeout``; this much more is the runner's own safety net.
_TIMEOUT_MARGIN = 5.0

logger = logging.getLogger("controller.hooks")


@dataclass
class _Job:
    action: RunHook
    started: float
    task: asyncio.Task[None]


class HookRunner:
    """Lifecycle hooks in flight and their answers, per rollout key; one per engine.

    ``on_answer(key)`` is called when an answer comes, so the engine looks at that rollout at once
    instead of at its next regular tick.
    """

    def __init__(
        self,
        *,
        lambda_: LambdaAdapter,
        clock: Callable[[], float],
        on_answer: Callable[[str], None] = lambda _key: None,
    ) -> None:
        self._lambda = lambda_
        self._clock = clock
        self._on_answer = on_answer
        self._running: dict[tuple[str, str], _Job] = {}
        self._answers: dict[str, list[HookAnswer]] = {}

    def start(self, key: str, spec: RolloutSpec, action: RunHook) -> None:
        """Run ``action`` for rollout ``key`` unless that hook already runs; returns at once."""
        if (key, action.name) in self._running:
            return
        task = asyncio.create_task(self._run(key, spec, action), name=f"hook {action.name} {key}")
        self._running[(key, action.name)] = _Job(action, self._clock(), task)

    async def _run(self, key: str, spec: RolloutSpec, action: RunHook) -> None:
        try:
            async with asyncio.timeout(action.hook.timeout + _TIMEOUT_MARGIN):
                result = await run_hook(spec, action, lambda_=self._lambda)
        except TimeoutError:
            result = Result(Verdict.FAILED, f"no answer within {action.hook.timeout:g}s")
        finally:
            self._running.pop((key, action.name), None)
        answer = HookAnswer(action.name, action.version, action.attempt, result.verdict, result.reason, self._clock())
        self._answers.setdefault(key, []).append(answer)
        why = result.reason or "no reason given"
        logger.info("hook %s for %s version %s answered %s: %s", action.name, key, action.version, result.verdict, why)
        self._on_answer(key)

    async def measure(self, subjects: Sequence[Subject], *, now: float, wait: bool) -> Mapping[str, Evidence]:
        """The hooks still running and the answers not handed over yet, for the subjects that have any."""
        found = {}
        for subject in subjects:
            key = subject.spec.key
            answers, running = self.answers(key), self.running(key)
            if answers or running:
                found[key] = Evidence(hook_answers=answers, hooks_running=running)
        return found

    def running(self, key: str) -> dict[str, float]:
        """Hook name -> when it was started, for the hooks of ``key`` still running."""
        return {name: job.started for (owner, name), job in self._running.items() if owner == key}

    def answers(self, key: str) -> tuple[HookAnswer, ...]:
        """Answers that came for ``key`` and were not yet handed to a reconcile that persisted them."""
        return tuple(self._answers.get(key, ()))

    def delivered(self, key: str, answers: Iterable[HookAnswer]) -> None:
        """A reconcile handed ``answers`` to the core and persisted the outcome: forget them."""
        handed = set(answers)
        left = [a for a in self._answers.get(key, ()) if a not in handed]
        if left:
            self._answers[key] = left
        else:
            self._answers.pop(key, None)

    def tasks(self, key: str | None = None) -> list[asyncio.Task[None]]:
        """The tasks of the hooks running (for ``key``, or all): ``Engine.tick`` waits for them."""
        return [job.task for (owner, _), job in self._running.items() if key is None or owner == key]

    def forget(self, key: str) -> None:
        """The rollout is no longer managed: stop its hooks and drop their answers."""
        for (owner, _), job in list(self._running.items()):
            if owner == key:
                job.task.cancel()
        self._answers.pop(key, None)

    async def close(self) -> None:
        """Cancel every hook still running (the engine stops; a new leader asks for them again)."""
        tasks = self.tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()


__all__ = [
    "SUCCESS_STATUSES",
    "FunctionHook",
    "HookRunner",
    "UrlHook",
    "hook_payload",
    "judge_invocation",
    "provider_for",
    "run_hook",
]
