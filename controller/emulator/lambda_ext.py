"""Strict AWS Lambda on top of moto: the rules moto leaves out, with AWS's error codes.

moto 5.x accepts everything a progressive-delivery controller must be refused by: stale
RevisionIds, routing weights of 1.5, routing to ``$LATEST`` or to the primary itself, mixed
execution roles; it has no provisioned-concurrency API and keeps one event-invoke config per
function, ignoring the qualifier. Code that passes against plain moto could therefore fail in
AWS mid-rollout. This module closes those gaps in two ways:

* small patches on moto's model classes (installed once by :func:`install`) give functions and
  aliases a RevisionId that changes on every change and keep ``DeadLetterConfig``;
* :class:`StrictLambda` runs before moto's own handler for each Lambda request: it validates
  (raising :class:`AwsError` shaped like AWS's), or serves operations moto lacks entirely
  (provisioned concurrency, per-qualifier event invoke configs) from its own small store;
* it also serves ``Invoke`` itself, without Docker: an alias invocation runs the version its
  routing weights draw for that request, each version answers as its :class:`~.lambda_metrics.Behaviour`
  says (failure rate, latency, payload), and every invocation records Lambda's own ``AWS/Lambda``
  metrics (:mod:`.lambda_metrics`). :meth:`StrictLambda.traffic` is the emulator's shortcut for N
  such invocations in one request (not an AWS API).
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.awslambda.models import LambdaAlias, LambdaFunction, LambdaStorage
from moto.awslambda.utils import get_backend, make_function_arn

from .lambda_metrics import MAX_TRAFFIC, Behaviour, Invocation, InvocationMetrics, route
from .settings import WRITE_LOCK, EmulatorSettings
from .wire import ErrorResponse, Operation

_PATCHED = False
_PATCH_LOCK = threading.Lock()

# --- errors ---------------------------------------------------------------------------------


class AwsError(Exception):
    """An error to return to the client exactly as AWS would (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> AwsError:
    return AwsError(400, "InvalidParameterValueException", message)


def not_found(message: str) -> AwsError:
    return AwsError(404, "ResourceNotFoundException", message)


def conflict(message: str) -> AwsError:
    return AwsError(409, "ResourceConflictException", message)


def precondition_failed(kind: str) -> AwsError:
    return AwsError(
        412,
        "PreconditionFailedException",
        f"The Revision Id provided does not match the latest Revision Id. "
        f"Call the {kind} API to retrieve the latest Revision Id",
    )


def validation(value: Any, member: str, constraint: str) -> AwsError:
    """AWS's generic modelled-constraint failure (``ValidationException``)."""
    return AwsError(
        400,
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: {constraint}",
    )


# --- patches on moto's models ---------------------------------------------------------------


def _new_revision() -> str:
    return str(uuid.uuid4())


def bump_revision(fn: LambdaFunction) -> None:
    fn._lr_revision = _new_revision()  # type: ignore[attr-defined]


def function_revision(fn: LambdaFunction) -> str:
    rev = getattr(fn, "_lr_revision", None)
    if rev is None:
        rev = _new_revision()
        fn._lr_revision = rev  # type: ignore[attr-defined]
    return str(rev)


def _normalise_routing(routing: Any) -> Any:
    """AWS drops an empty ``AdditionalVersionWeights`` instead of echoing ``{}`` back."""
    if isinstance(routing, dict) and not routing.get("AdditionalVersionWeights"):
        return ""
    return routing


def install() -> None:
    """Patch moto's Lambda models once per process (idempotent)."""
    global _PATCHED
    with _PATCH_LOCK:
        if _PATCHED:
            return
        _PATCHED = True

    orig_init = LambdaFunction.__init__
    orig_get_configuration = LambdaFunction.get_configuration
    orig_update_configuration = LambdaFunction.update_configuration
    orig_update_code = LambdaFunction.update_function_code
    orig_set_version = LambdaFunction.set_version
    orig_publish = LambdaStorage.publish_version
    orig_alias_init = LambdaAlias.__init__
    orig_alias_update = LambdaAlias.update

    def fn_init(self: LambdaFunction, account_id: str, spec: dict[str, Any], *args: Any, **kw: Any) -> None:
        orig_init(self, account_id, spec, *args, **kw)
        self._lr_revision = _new_revision()  # type: ignore[attr-defined]
        self._lr_dlq = spec.get("DeadLetterConfig") or None  # type: ignore[attr-defined]

    def get_configuration(self: LambdaFunction, on_create: bool = False) -> dict[str, Any]:
        config = orig_get_configuration(self, on_create)
        config["RevisionId"] = function_revision(self)
        dlq = getattr(self, "_lr_dlq", None)
        if dlq and dlq.get("TargetArn"):
            config["DeadLetterConfig"] = dlq
        return config

    def update_configuration(self: LambdaFunction, updates: dict[str, Any]) -> dict[str, Any]:
        if "DeadLetterConfig" in updates:
            self._lr_dlq = updates["DeadLetterConfig"] or None  # type: ignore[attr-defined]
        bump_revision(self)
        return orig_update_configuration(self, updates)

    def update_function_code(self: LambdaFunction, spec: dict[str, Any]) -> dict[str, Any]:
        if not spec.get("DryRun"):
            bump_revision(self)
        return orig_update_code(self, spec)

    def set_version(self: LambdaFunction, version: int) -> None:
        # A published version is a shallow copy of $LATEST: give it a RevisionId of its own.
        orig_set_version(self, version)
        bump_revision(self)

    def publish_version(self: LambdaStorage, name_or_arn: str, description: str = "") -> Any:
        fn = self.get_function_by_name_or_arn_forbid_qualifier(name_or_arn)
        before = len(self._functions[fn.function_name]["versions"])
        result = orig_publish(self, name_or_arn, description)
        if len(self._functions[fn.function_name]["versions"]) > before:
            # Publishing is a change to the function: its $LATEST RevisionId moves on too.
            bump_revision(self._functions[fn.function_name]["latest"])
        return result

    def alias_init(self: LambdaAlias, *args: Any, **kw: Any) -> None:
        orig_alias_init(self, *args, **kw)
        self.routing_config = _normalise_routing(self.routing_config)

    def alias_update(
        self: LambdaAlias, description: str | None, function_version: str | None, routing_config: Any
    ) -> None:
        orig_alias_update(self, description, function_version, _normalise_routing(routing_config))
        self.revision_id = _new_revision()

    LambdaFunction.__init__ = fn_init  # type: ignore[method-assign]
    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign,assignment]
    LambdaFunction.update_function_code = update_function_code  # type: ignore[method-assign,assignment]
    LambdaFunction.set_version = set_version  # type: ignore[method-assign]
    LambdaStorage.publish_version = publish_version  # type: ignore[method-assign]
    LambdaAlias.__init__ = alias_init  # type: ignore[method-assign]
    LambdaAlias.update = alias_update  # type: ignore[method-assign]


# --- the strict layer -----------------------------------------------------------------------

_NAME_RE = re.compile(
    r"^(?:arn:[^:]+:lambda:[^:]+:\d{12}:function:|\d{12}:function:)?([A-Za-z0-9_-]+)(?::([$A-Za-z0-9_-]+))?$"
)
_TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")
_DESTINATION_SERVICES = {"sqs", "sns", "lambda", "events", "s3"}


@dataclass
class ProvisionedConfig:
    """One provisioned-concurrency config; its status is derived from the clock when read."""

    function_name: str
    qualifier: str
    requested: int
    version: str
    started: float
    last_modified: str


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


#: Environment variables a function can set to make the emulator's Invoke answer on purpose.
INVOKE_RESPONSE_VAR = "EMULATOR_INVOKE_RESPONSE"
FUNCTION_ERROR_VAR = "EMULATOR_FUNCTION_ERROR"


@dataclass(frozen=True)
class InvokeTarget:
    """What an Invoke names: the function, its ``Resource`` dimension, and an alias or a version."""

    function: str
    resource: str | None  # "function:qualifier" for a qualified invocation
    alias: LambdaAlias | None
    version: str  # the version invoked directly ("$LATEST" when unqualified); the alias's primary otherwise


@dataclass(frozen=True)
class Answer:
    """How one invocation went."""

    version: str
    failed: bool
    duration_ms: float
    error_type: str | None
    payload: str | None
    sleep: bool


class StrictLambda:
    """Validates Lambda requests before moto sees them and serves what moto lacks."""

    def __init__(self, settings: EmulatorSettings) -> None:
        self.settings = settings
        # (account, region, function) -> qualifier -> config
        self.provisioned: dict[tuple[str, str, str], dict[str, ProvisionedConfig]] = {}
        self.event_invoke: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
        # (account, region, function, version) -> how that version answers Invoke
        self.behaviours: dict[tuple[str, str, str, str], Behaviour] = {}
        self._random = random.Random(settings.invoke_seed)

    def reset(self) -> None:
        self.provisioned.clear()
        self.event_invoke.clear()
        self.behaviours.clear()
        InvocationMetrics.reset()
        self.reseed()

    def reseed(self) -> None:
        """Start the draws of Invoke again from the ``invoke_seed`` setting."""
        self._random = random.Random(self.settings.invoke_seed)

    # ----- entry point -----

    def before(
        self,
        op: Operation,
        account: str,
        query: dict[str, list[str]],
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> ErrorResponse | None:
        """Validate or serve one Lambda request; ``None`` lets moto handle it."""
        handler = getattr(self, f"_op_{op.operation}", None)
        if handler is None:
            return None
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:  # Invoke payloads need not be JSON
            params = {}
        params = params if isinstance(params, dict) else {}
        ctx = _Ctx(account, op.region, op.params, {k: v[0] for k, v in query.items()}, params, body, headers or {})
        result: ErrorResponse | None = handler(ctx)
        return result

    # ----- lookups -----

    @staticmethod
    def _storage(ctx: _Ctx) -> LambdaStorage:
        return get_backend(ctx.account, ctx.region)._lambdas

    def _function(self, ctx: _Ctx) -> tuple[LambdaStorage, str, str | None]:
        """(storage, canonical function name, qualifier given inside the name) or 404."""
        raw = ctx.params.get("FunctionName") or ""
        match = _NAME_RE.match(raw)
        storage = self._storage(ctx)
        name = match.group(1) if match else raw
        if name not in storage._functions or storage._functions[name]["latest"] is None:
            raise not_found(f"Function not found: {make_function_arn(ctx.region, ctx.account, name)}")
        return storage, name, match.group(2) if match else None

    @staticmethod
    def _version(storage: LambdaStorage, name: str, version: str) -> LambdaFunction | None:
        if version == "$LATEST":
            return storage._functions[name]["latest"]  # type: ignore[no-any-return]
        return storage._get_version(name, version)

    @staticmethod
    def _aliases(storage: LambdaStorage, name: str) -> dict[str, LambdaAlias]:
        return storage._get_function_aliases(name)

    def _qualified_arn(self, ctx: _Ctx, name: str, qualifier: str) -> str:
        return f"{make_function_arn(ctx.region, ctx.account, name)}:{qualifier}"

    # ----- RevisionId on functions -----

    def _check_function_revision(self, ctx: _Ctx) -> None:
        wanted = ctx.body.get("RevisionId")
        if not wanted:
            return
        storage, name, _ = self._function(ctx)
        if function_revision(storage._functions[name]["latest"]) != wanted:
            raise precondition_failed("GetFunction/GetAlias")

    # ----- invoke: weighted routing, per-version behaviour, Lambda's own metrics -----

    def invoke_target(self, ctx: _Ctx) -> InvokeTarget:
        """Resolve the function and qualifier an Invoke names (name, name:qualifier, ARN forms)."""
        storage, name, inline = self._function(ctx)
        qualifier = ctx.query.get("Qualifier") or inline
        if not qualifier:
            return InvokeTarget(name, None, None, "$LATEST")
        alias = self._aliases(storage, name).get(qualifier)
        if alias is not None:
            return InvokeTarget(name, f"{name}:{qualifier}", alias, str(alias.function_version))
        if self._version(storage, name, qualifier) is None:
            raise not_found(f"Function not found: {self._qualified_arn(ctx, name, qualifier)}")
        return InvokeTarget(name, f"{name}:{qualifier}", None, qualifier)

    def answer(self, ctx: _Ctx, target: InvokeTarget, rng: random.Random) -> Answer:
        """One invocation: the version the alias routes this request to, and how that version answers.

        The behaviour set through the control endpoint decides failures and latency. The older test
        facility still works on top: ``EMULATOR_FUNCTION_ERROR`` in the version's environment makes
        every invocation fail with that error type, ``EMULATOR_INVOKE_RESPONSE`` is the payload.
        """
        version = route(target.version, _weights(target.alias), rng) if target.alias is not None else target.version
        behaviour = self.behaviours.get((ctx.account, ctx.region, target.function, version), Behaviour())
        failed, duration = behaviour.draw(rng)
        fn = self._version(self._storage(ctx), target.function, version)
        env: dict[str, str] = dict(getattr(fn, "environment_vars", None) or {})
        forced = env.get(FUNCTION_ERROR_VAR)
        payload = env.get(INVOKE_RESPONSE_VAR, behaviour.payload)
        error_type = forced or ("Unhandled" if failed else None)
        return Answer(version, bool(forced) or failed, duration, error_type, payload, behaviour.sleep)

    def _record(self, ctx: _Ctx, target: InvokeTarget, answers: list[tuple[float, Answer]]) -> None:
        InvocationMetrics.record(
            ctx.account,
            ctx.region,
            (
                Invocation(
                    timestamp=at,
                    function=target.function,
                    resource=target.resource,
                    executed_version=answer.version if target.alias is not None else None,
                    failed=answer.failed,
                    duration_ms=answer.duration_ms,
                )
                for at, answer in answers
            ),
        )

    def _op_Invoke(self, ctx: _Ctx) -> ErrorResponse:
        """Invoke without Docker: the routed version answers as its behaviour says; metrics are recorded.

        ``RequestResponse`` answers 200 with the payload (the behaviour's, else the request's own,
        as moto's Docker-less Lambda echoes it), ``X-Amz-Executed-Version`` and, when the invocation
        failed, ``X-Amz-Function-Error``; ``Event`` answers 202 and ``DryRun`` 204 (no invocation).
        """
        target = self.invoke_target(ctx)
        kind = ctx.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind == "DryRun":
            return 204, {}, b""
        started = time.time()
        answer = self.answer(ctx, target, self._random)
        self._record(ctx, target, [(started, answer)])
        if answer.sleep:
            # Invoke holds no lock (see EmulatorApp), so a slow version holds up nothing else.
            time.sleep(min(answer.duration_ms / 1000.0, max(self.settings.invoke_sleep_cap, 0.0)))
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": answer.version}
        if kind == "Event":
            return 202, headers, b""
        body = answer.payload.encode() if answer.payload is not None else (ctx.raw or b"null")
        if answer.error_type:
            headers["X-Amz-Function-Error"] = answer.error_type
            if answer.payload is None:
                body = json.dumps({"errorMessage": "failed on purpose", "errorType": answer.error_type}).encode()
        if ctx.headers.get("x-amz-log-type") == "Tail":
            request_id = uuid.uuid4()
            log = (
                f"START RequestId: {request_id} Version: {answer.version}\nEND RequestId: {request_id}\n"
                f"REPORT RequestId: {request_id}\tDuration: {answer.duration_ms:.2f} ms\n"
            )
            headers["X-Amz-Log-Result"] = base64.b64encode(log.encode()).decode()
        return 200, headers, body

    def traffic(
        self,
        *,
        account: str,
        region: str,
        function: str,
        qualifier: str | None = None,
        count: int | None = None,
        rate: float | None = None,
        seconds: float | None = None,
        at: float | None = None,
        seed: int | None = None,
    ) -> dict[str, dict[str, int]]:
        """N invocations in one call, recorded exactly as N Invokes would be (the emulator's shortcut).

        ``count`` invocations at ``at`` (epoch seconds, default now), or ``rate`` per second for
        ``seconds``, spread evenly over [``at - seconds``, ``at``). Each one is routed and answered
        on its own (``seed`` makes this call's draws repeatable). Returns invocations and errors per
        executed version.
        """
        if (count is None) == (rate is None and seconds is None):
            raise ValueError("give either count, or rate and seconds")
        when = time.time() if at is None else float(at)
        if count is not None:
            total, spread = int(count), 0.0
        else:
            if rate is None or seconds is None or float(rate) < 0 or float(seconds) <= 0:
                raise ValueError("rate must be at least 0 and seconds more than 0")
            total, spread = round(float(rate) * float(seconds)), float(seconds)
        if not 0 <= total <= MAX_TRAFFIC:
            raise ValueError(f"between 0 and {MAX_TRAFFIC} invocations per traffic request")
        stamps = [when - spread + spread * i / total for i in range(total)]
        ctx = _Ctx(account, region, {"FunctionName": function}, {"Qualifier": qualifier} if qualifier else {}, {})
        with WRITE_LOCK:  # the alias is read consistently; the invocations themselves change no state
            target = self.invoke_target(ctx)
        rng = random.Random(seed) if seed is not None else self._random
        answers = [(stamp, self.answer(ctx, target, rng)) for stamp in stamps]
        self._record(ctx, target, answers)
        invocations: dict[str, int] = {}
        errors: dict[str, int] = {}
        for _, answer in answers:
            invocations[answer.version] = invocations.get(answer.version, 0) + 1
            errors[answer.version] = errors.get(answer.version, 0) + int(answer.failed)
        return {"invocations": invocations, "errors": errors}

    def set_behaviour(self, *, account: str, region: str, function: str, version: str, behaviour: Behaviour) -> None:
        self.behaviours[(account, region, function, str(version))] = behaviour

    def behaviour_list(self) -> list[dict[str, Any]]:
        return [
            {"account": account, "region": region, "function": function, "version": version, **vars(behaviour)}
            for (account, region, function, version), behaviour in sorted(self.behaviours.items())
        ]

    def _op_UpdateFunctionCode(self, ctx: _Ctx) -> None:
        self._check_function_revision(ctx)

    def _op_UpdateFunctionConfiguration(self, ctx: _Ctx) -> None:
        self._check_function_revision(ctx)

    def _op_PublishVersion(self, ctx: _Ctx) -> None:
        self._check_function_revision(ctx)
        wanted = ctx.body.get("CodeSha256")
        if wanted:
            storage, name, _ = self._function(ctx)
            current = storage._functions[name]["latest"].code_sha_256
            if wanted != current:
                raise invalid(
                    f"CodeSHA256 ({wanted}) is different from current CodeSHA256 in $LATEST ({current}). "
                    "Please try again with the CodeSHA256 in $LATEST."
                )

    def _op_DeleteFunction(self, ctx: _Ctx) -> None:
        _storage, name, in_name = self._function(ctx)
        qualifier = ctx.query.get("Qualifier") or in_name
        key = (ctx.account, ctx.region, name)
        if qualifier:
            self.provisioned.get(key, {}).pop(qualifier, None)
            self.event_invoke.get(key, {}).pop(qualifier, None)
        else:
            self.provisioned.pop(key, None)
            self.event_invoke.pop(key, None)

    # ----- aliases and routing -----

    def _validate_routing(self, ctx: _Ctx, storage: LambdaStorage, name: str, primary: str, routing: Any) -> None:
        primary_fn = self._version(storage, name, primary)
        if primary_fn is None:
            raise not_found(f"Function not found: {self._qualified_arn(ctx, name, primary)}")
        weights = (routing or {}).get("AdditionalVersionWeights") or {}
        if not weights:
            return
        for version, weight in weights.items():
            if not isinstance(weight, int | float) or not 0.0 <= float(weight) <= 1.0:
                raise validation(
                    f"{{{version}={weight}}}",
                    "routingConfig.additionalVersionWeights",
                    "Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
                    "Member must have value greater than or equal to 0.0]",
                )
        if len(weights) > 1:
            raise invalid("Number of items in AdditionalVersionWeights cannot be greater than 1")
        (version,) = weights
        if primary == "$LATEST" or version == "$LATEST":
            raise invalid("$LATEST is not supported for an alias pointing to more than 1 version")
        if version == primary:
            raise invalid(
                f"Invalid function version {version}. Function version {version} is already included "
                "in routing configuration."
            )
        extra = self._version(storage, name, version)
        if extra is None:
            raise invalid(f"Version {version} does not exist for function {name}")
        if extra.role != primary_fn.role:
            raise invalid("Specified versions must be associated with the same execution role")
        if (getattr(extra, "_lr_dlq", None) or {}).get("TargetArn") != (getattr(primary_fn, "_lr_dlq", None) or {}).get(
            "TargetArn"
        ):
            raise invalid("Specified versions must be associated with the same dead letter config")

    def _op_CreateAlias(self, ctx: _Ctx) -> None:
        storage, name, _ = self._function(ctx)
        alias_name = str(ctx.body.get("Name", ""))
        if alias_name in self._aliases(storage, name):
            # moto answers ConflictException, a code Lambda does not have; botocore's modelled
            # exception (and any caller catching it) is ResourceConflictException.
            raise conflict(f"Alias already exists: {self._qualified_arn(ctx, name, alias_name)}")
        self._validate_routing(
            ctx, storage, name, str(ctx.body.get("FunctionVersion", "")), ctx.body.get("RoutingConfig")
        )

    def _op_UpdateAlias(self, ctx: _Ctx) -> None:
        storage, name, _ = self._function(ctx)
        alias_name = ctx.params.get("Name", "")
        alias = self._aliases(storage, name).get(alias_name)
        if alias is None:
            raise not_found(f"Cannot find alias arn: {self._qualified_arn(ctx, name, alias_name)}")
        wanted = ctx.body.get("RevisionId")
        if wanted and wanted != alias.revision_id:
            raise precondition_failed("GetAlias")
        primary = str(ctx.body.get("FunctionVersion") or alias.function_version)
        routing = ctx.body.get("RoutingConfig", alias.routing_config)
        self._validate_routing(ctx, storage, name, primary, routing)

    # ----- listing, paged like AWS -----

    def _op_ListVersionsByFunction(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        latest = storage._functions[name]["latest"]
        versions = [latest, *storage._functions[name]["versions"]]
        items = []
        for fn in versions:
            config = fn.get_configuration()
            if fn is latest:
                # moto's own listing qualifies the ARN of $LATEST like AWS does.
                config["FunctionArn"] = self._qualified_arn(ctx, name, "$LATEST")
            items.append(config)
        # AWS: "returns a maximum of 50 items in each response, even if you set the number higher".
        page, marker = _page(items, ctx.query, key="Version", cap=LIST_PAGE_SIZE, rank=_version_rank)
        return _ok({"Versions": page, **({"NextMarker": marker} if marker else {})})

    def _op_ListAliases(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        aliases = sorted(self._aliases(storage, name).values(), key=lambda alias: alias.name)
        wanted_version = ctx.query.get("FunctionVersion")
        items = [a.to_json() for a in aliases if not wanted_version or a.function_version == wanted_version]
        page, marker = _page(items, ctx.query, key="Name", cap=LIST_PAGE_SIZE)
        return _ok({"Aliases": page, **({"NextMarker": marker} if marker else {})})

    def _op_DeleteAlias(self, ctx: _Ctx) -> None:
        _storage, name, _ = self._function(ctx)
        key = (ctx.account, ctx.region, name)
        self.provisioned.get(key, {}).pop(ctx.params.get("Name", ""), None)
        self.event_invoke.get(key, {}).pop(ctx.params.get("Name", ""), None)

    # ----- tags -----

    @staticmethod
    def _validate_tags(existing: dict[str, str], new: dict[str, str]) -> None:
        for key, value in new.items():
            if not 1 <= len(key) <= 128:
                raise invalid(f"Tag key '{key[:140]}' must be between 1 and 128 characters long")
            if len(value) > 256:
                raise invalid(f"Tag value for key '{key}' must be at most 256 characters long")
            if key.lower().startswith("aws:"):
                raise invalid(f"Tag key '{key}' uses the reserved prefix 'aws:'")
            if not _TAG_CHARS.match(key) or not _TAG_CHARS.match(value):
                raise invalid(
                    f"Tag '{key}' contains invalid characters: keys and values may only contain "
                    "letters, digits, spaces and _ . : / = + - @"
                )
        if len(set(existing) | set(new)) > 50:
            raise invalid("Number of tags exceeds resource tag limit (50)")

    def _op_TagResource(self, ctx: _Ctx) -> None:
        arn = ctx.params.get("Resource", "")
        backend = get_backend(ctx.account, ctx.region)
        try:
            existing = backend.list_tags(arn)
        except Exception as exc:  # moto raises its own 404 types; report AWS's
            raise not_found(f"Function not found: {arn}") from exc
        self._validate_tags(existing, ctx.body.get("Tags") or {})

    def _op_CreateFunction(self, ctx: _Ctx) -> None:
        self._validate_tags({}, ctx.body.get("Tags") or {})

    # ----- reserved concurrency -----

    def _op_PutFunctionConcurrency(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        wanted = int(ctx.body.get("ReservedConcurrentExecutions", -1))
        if wanted < 0:
            raise validation(
                wanted, "reservedConcurrentExecutions", "Member must have value greater than or equal to 0"
            )
        others = sum(
            int(group["latest"].reserved_concurrency or 0)
            for fname, group in storage._functions.items()
            if fname != name and group["latest"] is not None
        )
        limit = self.settings.account_concurrency_limit - self.settings.minimum_unreserved_concurrency
        if others + wanted > limit:
            raise invalid(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of "
                f"[{self.settings.minimum_unreserved_concurrency}]."
            )
        provisioned = sum(c.requested for c in self.provisioned.get((ctx.account, ctx.region, name), {}).values())
        if provisioned > wanted:
            raise invalid(
                f"Specified ReservedConcurrentExecutions for function is less than the function's "
                f"provisioned concurrency ({provisioned})."
            )
        storage._functions[name]["latest"].reserved_concurrency = wanted
        for version in storage._functions[name]["versions"]:
            version.reserved_concurrency = wanted
        return _ok({"ReservedConcurrentExecutions": wanted})

    def _op_GetFunctionConcurrency(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        value = storage._functions[name]["latest"].reserved_concurrency
        return _ok({} if value is None else {"ReservedConcurrentExecutions": int(value)})

    def _op_DeleteFunctionConcurrency(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        storage._functions[name]["latest"].reserved_concurrency = None
        for version in storage._functions[name]["versions"]:
            version.reserved_concurrency = None
        return 204, {}, b""

    # ----- provisioned concurrency -----

    def _resolve_pc_target(self, ctx: _Ctx) -> tuple[LambdaStorage, str, str, str, LambdaAlias | None]:
        """(storage, function, qualifier, version it lands on, alias or None), AWS's errors otherwise."""
        storage, name, in_name = self._function(ctx)
        qualifier = ctx.query.get("Qualifier") or in_name or ""
        if qualifier == "$LATEST":
            raise invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        alias = self._aliases(storage, name).get(qualifier)
        if alias is not None:
            if alias.function_version == "$LATEST":
                raise invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
            return storage, name, qualifier, str(alias.function_version), alias
        if self._version(storage, name, qualifier) is None:
            raise not_found(f"Function not found: {self._qualified_arn(ctx, name, qualifier)}")
        return storage, name, qualifier, qualifier, None

    def _current(self, ctx: _Ctx, storage: LambdaStorage, name: str, config: ProvisionedConfig) -> ProvisionedConfig:
        """Re-start allocation when an alias moved to another version, as Lambda does."""
        alias = self._aliases(storage, name).get(config.qualifier)
        if alias is not None and str(alias.function_version) != config.version:
            config.version = str(alias.function_version)
            config.started = time.monotonic()
            config.last_modified = _now_iso()
        return config

    def _pc_view(self, config: ProvisionedConfig) -> dict[str, Any]:
        delay = max(self.settings.provisioned_concurrency_delay, 0.0)
        elapsed = time.monotonic() - config.started
        ready = elapsed >= delay
        allocated = config.requested if ready else int(config.requested * elapsed / delay)
        view: dict[str, Any] = {
            "RequestedProvisionedConcurrentExecutions": config.requested,
            "AvailableProvisionedConcurrentExecutions": allocated,
            "AllocatedProvisionedConcurrentExecutions": allocated,
            "Status": "READY" if ready else "IN_PROGRESS",
            "LastModified": config.last_modified,
        }
        return view

    def _op_PutProvisionedConcurrencyConfig(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, qualifier, version, alias = self._resolve_pc_target(ctx)
        if alias is not None and _weights(alias):
            raise invalid("Alias with weights can not be used with Provisioned Concurrency")
        requested = int(ctx.body.get("ProvisionedConcurrentExecutions", 0))
        if requested < 1:
            raise validation(
                requested, "provisionedConcurrentExecutions", "Member must have value greater than or equal to 1"
            )
        configs = self.provisioned.setdefault((ctx.account, ctx.region, name), {})
        for other in list(configs.values()):
            if other.qualifier == qualifier:
                continue
            other = self._current(ctx, storage, name, other)
            if other.version == version:
                raise conflict(
                    f"Version {version} of function {name} already has provisioned concurrency "
                    f"configured through qualifier {other.qualifier}; one config per version is allowed"
                )
        reserved = storage._functions[name]["latest"].reserved_concurrency
        total = requested + sum(c.requested for q, c in configs.items() if q != qualifier)
        if reserved is not None and total > int(reserved):
            raise invalid(
                "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution "
                f"for function: {name}"
            )
        config = ProvisionedConfig(name, qualifier, requested, version, time.monotonic(), _now_iso())
        configs[qualifier] = config
        view = self._pc_view(config)
        return _ok(view, 202)

    def _op_GetProvisionedConcurrencyConfig(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, qualifier, _, _ = self._resolve_pc_target(ctx)
        config = self.provisioned.get((ctx.account, ctx.region, name), {}).get(qualifier)
        if config is None:
            raise AwsError(
                404,
                "ProvisionedConcurrencyConfigNotFoundException",
                "No Provisioned Concurrency Config found for this function",
            )
        return _ok(self._pc_view(self._current(ctx, storage, name, config)))

    def _op_DeleteProvisionedConcurrencyConfig(self, ctx: _Ctx) -> ErrorResponse:
        _storage, name, qualifier, _, alias = self._resolve_pc_target(ctx)
        if alias is not None and _weights(alias):
            raise invalid("Alias with weights can not be used with Provisioned Concurrency")
        configs = self.provisioned.get((ctx.account, ctx.region, name), {})
        if qualifier not in configs:
            raise AwsError(
                404,
                "ProvisionedConcurrencyConfigNotFoundException",
                "No Provisioned Concurrency Config found for this function",
            )
        del configs[qualifier]
        return 204, {}, b""

    def _op_ListProvisionedConcurrencyConfigs(self, ctx: _Ctx) -> ErrorResponse:
        storage, name, _ = self._function(ctx)
        items = []
        for qualifier, config in sorted(self.provisioned.get((ctx.account, ctx.region, name), {}).items()):
            view = self._pc_view(self._current(ctx, storage, name, config))
            view["FunctionArn"] = self._qualified_arn(ctx, name, qualifier)
            items.append(view)
        return _ok({"ProvisionedConcurrencyConfigs": items})

    # ----- event invoke config -----

    def _eic_target(self, ctx: _Ctx) -> tuple[str, str]:
        storage, name, in_name = self._function(ctx)
        qualifier = ctx.query.get("Qualifier") or in_name or "$LATEST"
        if qualifier not in self._aliases(storage, name) and self._version(storage, name, qualifier) is None:
            raise not_found(f"Function not found: {self._qualified_arn(ctx, name, qualifier)}")
        return name, qualifier

    @staticmethod
    def _validate_eic(config: dict[str, Any]) -> None:
        if "MaximumRetryAttempts" in config:
            value = int(config["MaximumRetryAttempts"])
            if value > 2:
                raise validation(value, "maximumRetryAttempts", "Member must have value less than or equal to 2")
            if value < 0:
                raise validation(value, "maximumRetryAttempts", "Member must have value greater than or equal to 0")
        if "MaximumEventAgeInSeconds" in config:
            value = int(config["MaximumEventAgeInSeconds"])
            if value > 21600:
                raise validation(
                    value, "maximumEventAgeInSeconds", "Member must have value less than or equal to 21600"
                )
            if value < 60:
                raise validation(
                    value, "maximumEventAgeInSeconds", "Member must have value greater than or equal to 60"
                )
        for kind in ("OnSuccess", "OnFailure"):
            dest = ((config.get("DestinationConfig") or {}).get(kind) or {}).get("Destination")
            if not dest:
                continue
            parts = dest.split(":")
            allowed = _DESTINATION_SERVICES if kind == "OnFailure" else _DESTINATION_SERVICES - {"s3"}
            if len(parts) < 6 or parts[0] != "arn" or parts[2] not in allowed:
                raise invalid(f"The destination ARN {dest} is invalid.")

    def _eic_view(self, ctx: _Ctx, name: str, qualifier: str, stored: dict[str, Any]) -> dict[str, Any]:
        view = {"FunctionArn": self._qualified_arn(ctx, name, qualifier), "LastModified": stored["LastModified"]}
        for key in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
            if key in stored:
                view[key] = stored[key]
        view["DestinationConfig"] = stored.get("DestinationConfig") or {"OnSuccess": {}, "OnFailure": {}}
        return view

    def _put_eic(self, ctx: _Ctx, merge: bool) -> ErrorResponse:
        name, qualifier = self._eic_target(ctx)
        incoming: dict[str, Any] = {
            k: ctx.body[k]
            for k in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds", "DestinationConfig")
            if k in ctx.body
        }
        self._validate_eic(incoming)
        store = self.event_invoke.setdefault((ctx.account, ctx.region, name), {})
        if merge:
            if qualifier not in store:
                raise not_found(
                    f"The function {self._qualified_arn(ctx, name, qualifier)} doesn't have an EventInvokeConfig"
                )
            stored = dict(store[qualifier])
            dest = dict(stored.get("DestinationConfig") or {})
            dest.update(incoming.pop("DestinationConfig", {}) or {})
            stored.update(incoming)
            stored["DestinationConfig"] = dest
        else:
            stored = incoming
        stored["LastModified"] = time.time()
        store[qualifier] = stored
        return _ok(self._eic_view(ctx, name, qualifier, stored))

    def _op_PutFunctionEventInvokeConfig(self, ctx: _Ctx) -> ErrorResponse:
        return self._put_eic(ctx, merge=False)

    def _op_UpdateFunctionEventInvokeConfig(self, ctx: _Ctx) -> ErrorResponse:
        return self._put_eic(ctx, merge=True)

    def _op_GetFunctionEventInvokeConfig(self, ctx: _Ctx) -> ErrorResponse:
        name, qualifier = self._eic_target(ctx)
        stored = self.event_invoke.get((ctx.account, ctx.region, name), {}).get(qualifier)
        if stored is None:
            raise not_found(
                f"The function {self._qualified_arn(ctx, name, qualifier)} doesn't have an EventInvokeConfig"
            )
        return _ok(self._eic_view(ctx, name, qualifier, stored))

    def _op_DeleteFunctionEventInvokeConfig(self, ctx: _Ctx) -> ErrorResponse:
        name, qualifier = self._eic_target(ctx)
        store = self.event_invoke.get((ctx.account, ctx.region, name), {})
        if qualifier not in store:
            raise not_found(
                f"The function {self._qualified_arn(ctx, name, qualifier)} doesn't have an EventInvokeConfig"
            )
        del store[qualifier]
        return 204, {}, b""

    def _op_ListFunctionEventInvokeConfigs(self, ctx: _Ctx) -> ErrorResponse:
        _, name, _ = self._function(ctx)
        store = self.event_invoke.get((ctx.account, ctx.region, name), {})
        items = [self._eic_view(ctx, name, q, s) for q, s in sorted(store.items())]
        return _ok({"FunctionEventInvokeConfigs": items})


@dataclass
class _Ctx:
    """One request as the strict layer needs it."""

    account: str
    region: str
    params: dict[str, Any]
    query: dict[str, str]
    body: dict[str, Any]
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _weights(alias: LambdaAlias | None) -> dict[str, float]:
    """The alias's additional version weights ({} when it routes to one version)."""
    routing: Any = alias.routing_config if alias is not None else None
    return dict(routing.get("AdditionalVersionWeights") or {}) if isinstance(routing, dict) else {}


#: Items per List* page when the caller asks for more (or gives no MaxItems), as Lambda does.
LIST_PAGE_SIZE = 50
#: Lambda's modelled MaxItems range for ListVersionsByFunction / ListAliases.
MAX_ITEMS_RANGE = (1, 10_000)


def _version_rank(version: str) -> int:
    """$LATEST first, then published versions in numeric order (how Lambda lists them)."""
    return 0 if version == "$LATEST" else int(version) if version.isdigit() else -1


def _encode_marker(after: str) -> str:
    """An opaque marker naming the last item returned: stable if items are added meanwhile."""
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode()


def _decode_marker(marker: str) -> str:
    try:
        return str(json.loads(base64.urlsafe_b64decode(marker.encode()))["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid(f"Invalid Marker: {marker}") from exc


def _page(
    items: list[dict[str, Any]],
    query: dict[str, str],
    key: str,
    cap: int,
    rank: Callable[[str], Any] = str,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``items`` (ascending by ``rank(item[key])``) after ``Marker``, at most ``MaxItems`` and ``cap``."""
    raw = query.get("MaxItems")
    limit = cap
    if raw is not None:
        try:
            wanted = int(raw)
        except ValueError as exc:
            raise validation(raw, "maxItems", "Member must be an integer") from exc
        low, high = MAX_ITEMS_RANGE
        if wanted < low:
            raise validation(wanted, "maxItems", f"Member must have value greater than or equal to {low}")
        if wanted > high:
            raise validation(wanted, "maxItems", f"Member must have value less than or equal to {high}")
        limit = min(wanted, cap)
    start = 0
    if query.get("Marker"):
        # Resume after the last item returned, by rank not by position, so an item deleted
        # between two pages neither breaks the marker nor makes the next page skip one.
        after = rank(_decode_marker(query["Marker"]))
        start = next((i for i, item in enumerate(items) if rank(str(item[key])) > after), len(items))
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, _encode_marker(str(page[-1][key])) if more and page else None


def _ok(payload: dict[str, Any], status: int = 200) -> ErrorResponse:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()
