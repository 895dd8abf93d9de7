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
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from controller.analysis import Provider, Result
from controller.aws.errors import AwsError
from controller.aws.lambda_ import LambdaAdapter
from controller.core.types import RunHook, Verdict
from controller.spec.model import Hook, RolloutSpec

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


def provider_for(hook: Hook, *, lambda_: LambdaAdapter) -> Provider:
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


__all__ = [
    "SUCCESS_STATUSES",
    "FunctionHook",
    "UrlHook",
    "hook_payload",
    "judge_invocation",
    "provider_for",
    "run_hook",
]
