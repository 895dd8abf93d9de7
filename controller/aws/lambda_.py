"""The Lambda calls the controller makes, in the core's vocabulary (``AliasRouting``, ``VersionInfo``).

Shaped by two rules of the spec. Every alias write carries the RevisionId that was read, so a
concurrent manual change surfaces as ``Conflict`` instead of being clobbered; ``update_alias`` has no
way to leave it out. And weighted routing is "a primary plus at most one additional version": the
adapter translates ``AliasRouting`` to and from ``RoutingConfig.AdditionalVersionWeights``, always
sending an explicit (possibly empty) map so that a final step really clears the weights.

Reads that find nothing return None (a missing alias is a normal state: it gets created); writes
raise ``NotFound``, except releasing provisioned concurrency that is already gone (level-triggered
clean-up repeats it: "already released" is success). Concurrency and async settings are translated
to the core's ``ProvisionedConfig`` / ``EventInvokeConfig`` here, so the core never sees AWS's
shapes. The calls count against the "lambda" budget family, the account's shared control-plane
quota (15 requests/s across every control-plane API), including the tag calls that store the durable
record, with two exceptions that AWS itself meters apart: ``GetFunction`` has a quota of its own
(100/s), so the reads that only need a function's or a version's configuration go through it, in
the "lambda.get_function" family, and leave the scarce control-plane quota to the alias reads and
writes; ``invoke`` (lifecycle hooks) is data plane and has its own family too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.aws.calls import ApiCaller
from controller.aws.errors import NotFound
from controller.core.types import (
    WEIGHT_TOLERANCE,
    AliasRouting,
    EventInvokeConfig,
    ProvisionedConfig,
    ProvisionedStatus,
    VersionInfo,
)
from controller.document.names import LATEST, unqualified_arn

__all__ = [
    "FAMILY",
    "GET_FUNCTION_FAMILY",
    "INVOKE_FAMILY",
    "AliasState",
    "FunctionInfo",
    "Invocation",
    "LambdaAdapter",
]

FAMILY = "lambda"
# GetFunction is outside the control-plane quota: AWS allows it 100 requests/s of its own.
GET_FUNCTION_FAMILY = "lambda.get_function"
INVOKE_FAMILY = "lambda.invoke"


@dataclass(frozen=True)
class AliasState:
    """An alias as read (or as just written): where it routes and the RevisionId to send next."""

    routing: AliasRouting
    revision_id: str


@dataclass(frozen=True)
class FunctionInfo:
    """The function itself (``$LATEST``): unqualified ARN (what the tag APIs take), name, role and tags."""

    arn: str
    name: str
    role: str
    revision_id: str
    # AWS returns them only to a caller also allowed ``lambda:ListTags`` (docs/iam.md allows it).
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeLookup:
    """Where a code hash is published (``version``, None: nowhere) and the hash of ``$LATEST``."""

    version: str | None
    latest_code_sha256: str | None


@dataclass(frozen=True)
class Invocation:
    """What a synchronous Invoke answered: ``function_error`` (e.g. ``Unhandled``) or None, and the payload."""

    function_error: str | None
    payload: bytes


def _alias_state(response: Mapping[str, Any]) -> AliasState:
    weights: Mapping[str, float] = (response.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    additional: str | None = None
    weight = 0.0
    # AWS allows one additional version; if a (lenient) backend ever holds more, take the heaviest so
    # the observation is at least deterministic.
    for version, value in sorted(weights.items(), key=lambda item: (-float(item[1]), item[0])):
        additional, weight = version, float(value)
        break
    return AliasState(
        routing=AliasRouting(primary=str(response["FunctionVersion"]), additional=additional, weight=weight),
        revision_id=str(response.get("RevisionId") or ""),
    )


def _qualifier_of(arn: str) -> str:
    # arn:aws:lambda:REGION:ACCOUNT:function:NAME:QUALIFIER -> QUALIFIER
    parts = arn.split(":")
    return parts[7] if len(parts) > 7 else ""


def _provisioned(qualifier: str, response: Mapping[str, Any]) -> ProvisionedConfig:
    raw = str(response.get("Status") or ProvisionedStatus.IN_PROGRESS)
    status = ProvisionedStatus(raw) if raw in ProvisionedStatus.__members__ else ProvisionedStatus.IN_PROGRESS
    return ProvisionedConfig(
        qualifier=qualifier,
        requested=int(response.get("RequestedProvisionedConcurrentExecutions") or 0),
        allocated=int(response.get("AllocatedProvisionedConcurrentExecutions") or 0),
        status=status,
        reason=str(response.get("StatusReason") or ""),
    )


def _event_invoke(response: Mapping[str, Any]) -> EventInvokeConfig:
    destinations = response.get("DestinationConfig") or {}

    def destination(kind: str) -> str | None:
        value = (destinations.get(kind) or {}).get("Destination")
        return str(value) if value else None

    retries, age = response.get("MaximumRetryAttempts"), response.get("MaximumEventAgeInSeconds")
    return EventInvokeConfig(
        maximum_retry_attempts=int(retries) if retries is not None else None,
        maximum_event_age_seconds=int(age) if age is not None else None,
        on_success=destination("OnSuccess"),
        on_failure=destination("OnFailure"),
    )


def _event_invoke_params(config: EventInvokeConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if config.maximum_retry_attempts is not None:
        params["MaximumRetryAttempts"] = config.maximum_retry_attempts
    if config.maximum_event_age_seconds is not None:
        params["MaximumEventAgeInSeconds"] = config.maximum_event_age_seconds
    destinations: dict[str, Any] = {}
    if config.on_success:
        destinations["OnSuccess"] = {"Destination": config.on_success}
    if config.on_failure:
        destinations["OnFailure"] = {"Destination": config.on_failure}
    # Always sent, possibly empty: Put replaces the whole config, so a removed destination goes away.
    params["DestinationConfig"] = destinations
    return params


def _routing_config(routing: AliasRouting) -> dict[str, Any]:
    if routing.additional is None or routing.weight <= WEIGHT_TOLERANCE:
        # An explicit empty map clears a previous canary; leaving RoutingConfig out would keep it.
        return {"AdditionalVersionWeights": {}}
    return {"AdditionalVersionWeights": {routing.additional: float(routing.weight)}}


class LambdaAdapter:
    """Async Lambda operations; see the module docstring for the conventions."""

    def __init__(self, caller: ApiCaller) -> None:
        self._caller = caller

    async def _call(self, operation: str, *, priority: bool = False, **params: Any) -> dict[str, Any]:
        return await self._caller.call(operation, family=FAMILY, priority=priority, **params)

    async def _get_function(self, function: str, qualifier: str | None = None) -> dict[str, Any] | None:
        params: dict[str, Any] = {"FunctionName": function}
        if qualifier is not None:
            params["Qualifier"] = qualifier
        try:
            return await self._caller.call("GetFunction", family=GET_FUNCTION_FAMILY, **params)
        except NotFound:
            return None

    async def get_function(self, function: str) -> FunctionInfo | None:
        """``$LATEST``'s configuration and the function's tags, in one call; None when it does not exist."""
        response = await self._get_function(function)
        if response is None:
            return None
        config = response.get("Configuration") or {}
        return FunctionInfo(
            arn=unqualified_arn(str(config["FunctionArn"])),
            name=str(config["FunctionName"]),
            role=str(config.get("Role") or ""),
            revision_id=str(config.get("RevisionId") or ""),
            tags={str(k): str(v) for k, v in (response.get("Tags") or {}).items()},
        )

    async def get_alias(self, function: str, alias: str, *, priority: bool = False) -> AliasState | None:
        """The alias's routing and RevisionId; None when the alias (or the function) does not exist."""
        try:
            response = await self._call("GetAlias", priority=priority, FunctionName=function, Name=alias)
        except NotFound:
            return None
        return _alias_state(response)

    async def create_alias(
        self, function: str, alias: str, routing: AliasRouting, *, priority: bool = False
    ) -> AliasState:
        """Create ``alias`` routing as ``routing`` says; ``Conflict`` if it already exists."""
        params: dict[str, Any] = {"FunctionName": function, "Name": alias, "FunctionVersion": routing.primary}
        config = _routing_config(routing)
        if config["AdditionalVersionWeights"]:
            params["RoutingConfig"] = config
        response = await self._call("CreateAlias", priority=priority, **params)
        return _alias_state(response)

    async def update_alias(
        self, function: str, alias: str, routing: AliasRouting, *, revision_id: str, priority: bool = False
    ) -> AliasState:
        """Point ``alias`` at ``routing``, only if it is still at ``revision_id`` (else ``Conflict``).

        ``priority`` (a rollback) goes ahead of routine calls in the budget.
        """
        response = await self._call(
            "UpdateAlias",
            priority=priority,
            FunctionName=function,
            Name=alias,
            FunctionVersion=routing.primary,
            RoutingConfig=_routing_config(routing),
            RevisionId=revision_id,
        )
        return _alias_state(response)

    async def get_version(self, function: str, version: str) -> VersionInfo | None:
        """What the pre-flight checks compare (role, dead-letter target); None when the version is missing.

        A published version's configuration never changes, so callers cache it: one ``GetFunction``
        per version ever, outside the control-plane quota (``ListVersionsByFunction`` would spend
        that quota instead, one page per 50 versions, oldest first, to reach the newest).
        """
        response = await self._get_function(function, version)
        if response is None:
            return None
        config = response.get("Configuration") or {}
        target = (config.get("DeadLetterConfig") or {}).get("TargetArn")
        return VersionInfo(
            version=str(config.get("Version") or version),
            role=str(config.get("Role") or ""),
            dead_letter_target=str(target) if target else None,
        )

    async def find_version_by_sha(self, function: str, code_sha256: str) -> CodeLookup:
        """The newest published version whose code hash is ``code_sha256`` (never ``$LATEST``), and
        ``$LATEST``'s own hash, from the same listing.

        Lets ``spec.publish`` be idempotent: a controller that published and crashed before recording
        it finds the version instead of publishing again; and lets a publish that AWS would refuse
        (``$LATEST`` has other code) be reported instead of tried.
        """
        best: int | None = None
        best_name: str | None = None
        latest: str | None = None
        marker: str | None = None
        while True:
            params: dict[str, Any] = {"FunctionName": function, "MaxItems": 50}
            if marker:
                params["Marker"] = marker
            response = await self._call("ListVersionsByFunction", **params)
            for item in response.get("Versions") or []:
                name = str(item.get("Version") or "")
                if name == LATEST:
                    latest = item.get("CodeSha256")
                    continue
                if item.get("CodeSha256") != code_sha256:
                    continue
                number = int(name) if name.isdigit() else -1
                if best is None or number > best:
                    best, best_name = number, name
            marker = response.get("NextMarker")
            if not marker:
                return CodeLookup(version=best_name, latest_code_sha256=latest)

    async def publish_version(self, function: str, *, code_sha256: str, description: str | None) -> str:
        """Publish ``$LATEST`` as a new version, only if its code hash is ``code_sha256`` (else ``InvalidRequest``)."""
        params: dict[str, Any] = {"FunctionName": function, "CodeSha256": code_sha256}
        if description:
            params["Description"] = description
        response = await self._call("PublishVersion", **params)
        return str(response["Version"])

    async def invoke(self, function: str, payload: bytes, *, timeout: float) -> Invocation:
        """Invoke ``function`` synchronously (``RequestResponse``) with ``payload``, within ``timeout`` seconds.

        Lifecycle hooks use it. Invoke is data plane, not the control-plane quota: it takes tokens of
        its own family (``lambda.invoke``). A timeout raises ``TimeoutError``; the caller decides what
        that means (a hook that does not answer in time has failed).
        """
        async with asyncio.timeout(timeout):
            response = await self._caller.call(
                "Invoke",
                family=INVOKE_FAMILY,
                FunctionName=function,
                InvocationType="RequestResponse",
                Payload=payload,
            )
            body = response.get("Payload")
            data = await asyncio.to_thread(body.read) if body is not None else b""
        error = response.get("FunctionError")
        return Invocation(function_error=str(error) if error else None, payload=bytes(data))

    async def list_tags(self, function_arn: str, *, priority: bool = False) -> dict[str, str]:
        response = await self._call("ListTags", priority=priority, Resource=function_arn)
        return {str(k): str(v) for k, v in (response.get("Tags") or {}).items()}

    async def tag(self, function_arn: str, tags: Mapping[str, str], *, priority: bool = False) -> None:
        """Set ``tags`` in ONE TagResource call (all chunks of a record land together).

        ``priority``: the write-ahead record of a rollback must not queue behind routine calls either.
        """
        if tags:
            await self._call("TagResource", priority=priority, Resource=function_arn, Tags=dict(tags))

    async def untag(self, function_arn: str, keys: Iterable[str], *, priority: bool = False) -> None:
        """Remove ``keys`` (no call at all when there is nothing to remove)."""
        key_list = sorted(set(keys))
        if key_list:
            await self._call("UntagResource", priority=priority, Resource=function_arn, TagKeys=key_list)

    # ---- concurrency and async invocation ---------------------------------------------------------------

    async def get_reserved_concurrency(self, function: str) -> int | None:
        """The function's reserved concurrency; None when none is reserved."""
        response = await self._call("GetFunctionConcurrency", FunctionName=function)
        value = response.get("ReservedConcurrentExecutions")
        return int(value) if value is not None else None

    async def put_reserved_concurrency(self, function: str, value: int) -> None:
        await self._call("PutFunctionConcurrency", FunctionName=function, ReservedConcurrentExecutions=value)

    async def delete_reserved_concurrency(self, function: str) -> None:
        await self._call("DeleteFunctionConcurrency", FunctionName=function)

    async def get_provisioned(self, function: str, qualifier: str) -> ProvisionedConfig | None:
        """``qualifier``'s provisioned-concurrency config; None when it has none."""
        try:
            response = await self._call("GetProvisionedConcurrencyConfig", FunctionName=function, Qualifier=qualifier)
        except NotFound:
            return None
        return _provisioned(qualifier, response)

    async def list_provisioned(self, function: str) -> dict[str, ProvisionedConfig]:
        """Every provisioned-concurrency config of the function, by qualifier (all pages)."""
        configs: dict[str, ProvisionedConfig] = {}
        marker: str | None = None
        while True:
            params: dict[str, Any] = {"FunctionName": function, "MaxItems": 50}
            if marker:
                params["Marker"] = marker
            response = await self._call("ListProvisionedConcurrencyConfigs", **params)
            for item in response.get("ProvisionedConcurrencyConfigs") or []:
                qualifier = _qualifier_of(str(item.get("FunctionArn") or ""))
                configs[qualifier] = _provisioned(qualifier, item)
            marker = response.get("NextMarker")
            if not marker:
                return configs

    async def put_provisioned(self, function: str, qualifier: str, value: int) -> ProvisionedConfig:
        """Ask for ``value`` warm instances on ``qualifier``; allocation starts (``IN_PROGRESS``)."""
        response = await self._call(
            "PutProvisionedConcurrencyConfig",
            FunctionName=function,
            Qualifier=qualifier,
            ProvisionedConcurrentExecutions=value,
        )
        return _provisioned(qualifier, response)

    async def delete_provisioned(self, function: str, qualifier: str) -> bool:
        """Release ``qualifier``'s config; False when there was none (already released)."""
        try:
            await self._call("DeleteProvisionedConcurrencyConfig", FunctionName=function, Qualifier=qualifier)
        except NotFound:
            return False
        return True

    async def get_event_invoke_config(self, function: str, qualifier: str) -> EventInvokeConfig | None:
        """``qualifier``'s async settings; None when it has no event invoke config."""
        try:
            response = await self._call("GetFunctionEventInvokeConfig", FunctionName=function, Qualifier=qualifier)
        except NotFound:
            return None
        return _event_invoke(response)

    async def put_event_invoke_config(
        self, function: str, qualifier: str, config: EventInvokeConfig
    ) -> EventInvokeConfig:
        """Replace ``qualifier``'s async settings (Put, not Update: what is not declared is not kept)."""
        response = await self._call(
            "PutFunctionEventInvokeConfig", FunctionName=function, Qualifier=qualifier, **_event_invoke_params(config)
        )
        return _event_invoke(response)
