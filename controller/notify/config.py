"""The notifications config (``--notifications FILE``, or the same YAML in a ConfigMap key): model and checks.

One document with four sections (``docs/notifications.md`` is the reference)::

    targets:        where messages go: a name and exactly one of slack, teams, webhook, sns
    subscriptions:  which triggers of which rollouts go to which target
    links:          one-click promote / abort links (off unless a signing key is configured)
    delivery:       queue size, attempts, timeouts (all optional)

It is read with the same line-aware YAML reading as rollout documents (``controller.document.documents``)
and checked with the same readable JSON Schema validator (``controller.document.schema``), so every
problem comes back at once as a ``SpecError`` (``FILE:LINE: path: message``). Secrets never live in
the document: webhook URLs of Slack and Teams, shared secrets, header values that authenticate and
the signing key are named by ``...From: {env: NAME}`` or ``{file: PATH}`` and read when the
controller starts (``controller.notify.secrets``); writing one inline is an error that says so,
because a config file ends up in git and in ``kubectl get configmap -o yaml``.

A daemon given a bad file refuses to start: notifications half-understood would be silently missing
exactly when someone waits for them.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from controller.document.documents import LineIndex, config_document, config_text
from controller.document.durations import DURATION_PATTERN, parse_duration
from controller.document.errors import Path, SpecError, format_path
from controller.document.schema import readable_validator, validation_errors

from .transition import Transition, Trigger

__all__ = [
    "DeliveryPolicy",
    "Header",
    "Links",
    "NotificationConfig",
    "Origin",
    "SecretRef",
    "SlackTarget",
    "SnsTarget",
    "Subscription",
    "Target",
    "TeamsTarget",
    "WebhookTarget",
    "load_notifications",
    "parse_notifications",
    "targets_for",
    "url_problem",
]

#: A link carries the power to act on a rollout: it must not outlive a working day or two by much.
MAX_LINK_TTL = 7 * 24 * 3600.0
DEFAULT_LINK_TTL = 3600.0
#: Headers the controller sets itself; a config may not override them.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "x-lambda-rollouts-signature", "x-lambda-rollouts-timestamp"}
)
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HEADER_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
_TOPIC_PATTERN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$"
_URL_PATTERN = r"^https?://[^\s]+$"
# Header names whose values authenticate: never inline, always valueFrom.
_SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|key|auth|signature|password|credential", re.I)
# Query parameters that carry a credential in webhook URLs (Teams workflows' sig, API keys, tokens).
_SENSITIVE_QUERY = re.compile(r"^(sig|signature|token|access_token|key|api[-_]?key|secret|code|auth|password)$", re.I)
# Hosts whose incoming-webhook URLs are themselves the credential.
_SECRET_URL_HOSTS = (
    ("hooks.slack.com", "a Slack incoming-webhook URL"),
    ("webhook.office.com", "a Microsoft Teams webhook URL"),
    ("logic.azure.com", "a Power Automate (Teams workflow) URL"),
    ("discord.com", "a Discord webhook URL"),
)

PATTERN_HINTS: Mapping[str, str] = {
    "name": "a target name: lowercase letters, digits and -, at most 63 (like a Kubernetes name)",
    "target": "a target name: lowercase letters, digits and -, at most 63 (like a Kubernetes name)",
    "env": "an environment variable name: letters, digits and _, not starting with a digit",
    "topicArn": "an SNS topic ARN: arn:aws:sns:REGION:ACCOUNT:NAME",
    "url": "an https:// URL",
    "baseUrl": "an https:// URL",
    "ttl": "a duration such as 90s, 5m, 1h30m",
    "attemptTimeout": "a duration such as 90s, 5m, 1h30m",
    "maxAge": "a duration such as 90s, 5m, 1h30m",
    "namespaces": "a namespace: lowercase letters, digits and -",
    "headers": "a header name: letters, digits and - (RFC 9110 token characters)",
}


# ---- the model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Where a value was written, so errors found later (a missing variable) point at the line."""

    file: str = ""
    line: int = 0
    path: str = ""

    def error(self, message: str) -> SpecError:
        return SpecError(self.file, self.line, self.path, message)


@dataclass(frozen=True)
class SecretRef:
    """A secret named by the config and read from the environment or a file (a mounted Kubernetes Secret)."""

    env: str | None = None
    file: str | None = None
    origin: Origin = field(default_factory=Origin, compare=False)

    def describe(self) -> str:
        """What to tell a person about where the secret is: its variable or file, never its value."""
        return f"environment variable {self.env}" if self.env is not None else f"file {self.file}"


@dataclass(frozen=True)
class SlackTarget:
    """A Slack incoming webhook; the URL itself is the credential."""

    name: str
    url: SecretRef


@dataclass(frozen=True)
class TeamsTarget:
    """A Microsoft Teams incoming webhook (a Workflows "when a webhook request is received" URL)."""

    name: str
    url: SecretRef


@dataclass(frozen=True)
class Header:
    """An extra HTTP header of a webhook: an inline ``value``, or ``value_from`` a secret."""

    name: str
    value: str = ""
    value_from: SecretRef | None = None


@dataclass(frozen=True)
class WebhookTarget:
    """Any HTTP endpoint receiving CloudEvents; ``secret`` signs each body (HMAC-SHA256)."""

    name: str
    url: str | None = None
    url_from: SecretRef | None = None
    secret: SecretRef | None = None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True)
class SnsTarget:
    """An SNS topic, published to through the controller's AWS clients (its region and budget)."""

    name: str
    topic_arn: str


Target = SlackTarget | TeamsTarget | WebhookTarget | SnsTarget


@dataclass(frozen=True)
class Subscription:
    """Send ``on`` triggers of the matching rollouts to ``target``.

    ``namespaces`` (exact) and ``names`` (globs over the rollout's name) narrow it; empty means all.
    ``opt_in``: it applies only to rollouts whose ``spec.notifications`` names ``target``, which lets
    a platform team offer a target that each rollout chooses (the filters still apply, so a team
    cannot opt in to a target meant for another namespace).
    """

    target: str
    on: frozenset[Trigger]
    namespaces: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    opt_in: bool = False

    def matches(self, transition: Transition, *, opt_in: Collection[str] = ()) -> bool:
        if transition.trigger not in self.on:
            return False
        if self.namespaces and transition.namespace not in self.namespaces:
            return False
        if self.names and not any(fnmatch.fnmatchcase(transition.name, pattern) for pattern in self.names):
            return False
        return not self.opt_in or self.target in opt_in


@dataclass(frozen=True)
class Links:
    """One-click gates: ``<base_url>/v1/gate/<token>``, tokens signed with ``signing_key``, valid ``ttl`` seconds."""

    base_url: str
    signing_key: SecretRef
    ttl: float = DEFAULT_LINK_TTL


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard to try: per target queue size, attempts, per-attempt timeout, the age past which to give up.

    Backoff between attempts is exponential with full jitter (``base_delay`` doubling up to
    ``max_delay``), or what the receiver's ``Retry-After`` asks for when that is longer.
    """

    queue_size: int = 100
    max_attempts: int = 6
    attempt_timeout: float = 10.0
    max_age: float = 600.0
    base_delay: float = 1.0
    max_delay: float = 60.0


@dataclass(frozen=True)
class NotificationConfig:
    targets: tuple[Target, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    links: Links | None = None
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    source: str = ""


def subscribed(config: NotificationConfig, *, namespace: str, name: str, opt_in: Collection[str] = ()) -> bool:
    """Whether any subscription could ever send this rollout's transitions (whatever the trigger)."""
    return any(
        (not sub.namespaces or namespace in sub.namespaces)
        and (not sub.names or any(fnmatch.fnmatchcase(name, pattern) for pattern in sub.names))
        and (not sub.opt_in or sub.target in opt_in)
        for sub in config.subscriptions
    )


def targets_for(
    config: NotificationConfig, transition: Transition, *, rollout_opt_in: Collection[str] = ()
) -> tuple[str, ...]:
    """The names of the targets ``transition`` goes to, each once, in the order the config lists targets.

    ``rollout_opt_in`` is the rollout's ``spec.notifications`` (target names it opted in to).
    """
    wanted = {sub.target for sub in config.subscriptions if sub.matches(transition, opt_in=rollout_opt_in)}
    return tuple(target.name for target in config.targets if target.name in wanted)


# ---- the schema -------------------------------------------------------------------------------------


def _secret_ref() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "env": {"type": "string", "pattern": _ENV_PATTERN},
            "file": {"type": "string", "minLength": 1},
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["env"]}, {"required": ["file"]}],
    }


def _url_holder() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"urlFrom": _secret_ref()},
        "required": ["urlFrom"],
        "additionalProperties": False,
    }


def _duration() -> dict[str, Any]:
    return {"type": "string", "pattern": DURATION_PATTERN}


SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "pattern": _NAME_PATTERN},
                    "slack": _url_holder(),
                    "teams": _url_holder(),
                    "webhook": {
                        "type": "object",
                        "properties": {
                            "url": {"type": "string", "pattern": _URL_PATTERN, "maxLength": 2048},
                            "urlFrom": _secret_ref(),
                            "secretFrom": _secret_ref(),
                            "headers": {
                                "type": "object",
                                "propertyNames": {"pattern": _HEADER_PATTERN},
                                "additionalProperties": {
                                    "type": ["string", "object"],
                                    "maxLength": 4096,
                                    "properties": {"valueFrom": _secret_ref()},
                                    "required": ["valueFrom"],
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                        "oneOf": [{"required": ["url"]}, {"required": ["urlFrom"]}],
                    },
                    "sns": {
                        "type": "object",
                        "properties": {"topicArn": {"type": "string", "pattern": _TOPIC_PATTERN}},
                        "required": ["topicArn"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name"],
                "additionalProperties": False,
                "oneOf": [
                    {"required": ["slack"]},
                    {"required": ["teams"]},
                    {"required": ["webhook"]},
                    {"required": ["sns"]},
                ],
            },
        },
        "subscriptions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "target": {"type": "string", "pattern": _NAME_PATTERN},
                    "on": {
                        "type": "array",
                        "minItems": 1,
                        "uniqueItems": True,
                        "items": {"type": "string", "enum": [trigger.value for trigger in Trigger]},
                    },
                    "namespaces": {"type": "array", "items": {"type": "string", "pattern": _NAME_PATTERN}},
                    "names": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 253}},
                    "optIn": {"type": "boolean"},
                },
                "required": ["target", "on"],
                "additionalProperties": False,
            },
        },
        "links": {
            "type": "object",
            "properties": {
                "baseUrl": {"type": "string", "pattern": _URL_PATTERN, "maxLength": 1024},
                "signingKeyFrom": _secret_ref(),
                "ttl": _duration(),
            },
            "required": ["baseUrl", "signingKeyFrom"],
            "additionalProperties": False,
        },
        "delivery": {
            "type": "object",
            "properties": {
                "queueSize": {"type": "integer", "minimum": 1, "maximum": 10000},
                "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 20},
                "attemptTimeout": _duration(),
                "maxAge": _duration(),
            },
            "additionalProperties": False,
        },
    },
    "required": ["targets", "subscriptions"],
    "additionalProperties": False,
}


@functools.cache
def _validator() -> Any:
    return readable_validator(SCHEMA)


# ---- URLs -------------------------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot receive notifications or links (None when it can); never quotes the URL.

    https:// everywhere, because the body carries one-click links and some URLs are credentials;
    plain http:// only to the loopback interface (a local relay, tests).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an https:// URL"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must be https:// (plain http:// is accepted only for localhost)"
    return None


def _inline_secret_in_url(url: str) -> str | None:
    """What kind of credential an inline webhook URL carries, or None when it looks like a plain address."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    for suffix, kind in _SECRET_URL_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return kind
    if parts.username or parts.password:
        return "a user name or password"
    named = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True) if _SENSITIVE_QUERY.match(name)]
    if named:
        return f"a credential in its query ({', '.join(sorted(set(named)))})"
    return None


# ---- checks -----------------------------------------------------------------------------------------

_USE_FROM = "keep it out of this file and use {field}: {{env: NAME}} or {{file: PATH}}"


def _inline_secrets(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Secrets written into the document, each with the ``...From`` field to use instead."""
    problems: list[tuple[Path, str]] = []
    targets = data.get("targets")
    for index, target in enumerate(targets if isinstance(targets, list) else []):
        if not isinstance(target, dict):
            continue
        for kind, label in (("slack", "a Slack"), ("teams", "a Microsoft Teams")):
            section = target.get(kind)
            if isinstance(section, dict) and "url" in section:
                message = f"{label} incoming-webhook URL is a secret: {_USE_FROM.format(field='urlFrom')}"
                problems.append((("targets", index, kind, "url"), message))
        webhook = target.get("webhook")
        if not isinstance(webhook, dict):
            continue
        for name in ("secret", "signingSecret", "token", "password"):
            if name in webhook:
                use = _USE_FROM.format(field="secretFrom")
                message = f"a shared secret written here ends up in git and in the ConfigMap: {use}"
                problems.append((("targets", index, "webhook", name), message))
        url = webhook.get("url")
        kind_of_secret = _inline_secret_in_url(url) if isinstance(url, str) else None
        if kind_of_secret is not None:
            message = f"this URL carries {kind_of_secret}, a secret: {_USE_FROM.format(field='urlFrom')}"
            problems.append((("targets", index, "webhook", "url"), message))
        headers = webhook.get("headers")
        for header, value in headers.items() if isinstance(headers, dict) else []:
            if isinstance(value, str) and _SENSITIVE_HEADER.search(str(header)):
                message = f"the value of {header} authenticates: {_USE_FROM.format(field='valueFrom')}"
                problems.append((("targets", index, "webhook", "headers", str(header)), message))
    links = data.get("links")
    if isinstance(links, dict) and "signingKey" in links:
        problems.append(
            (("links", "signingKey"), f"the signing key is a secret: {_USE_FROM.format(field='signingKeyFrom')}")
        )
    return problems


def _semantic(data: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Rules the schema cannot say: unique names, known targets, URL schemes, reserved headers, limits."""
    problems: list[tuple[Path, str]] = []
    targets = _list(data.get("targets"))
    names: dict[str, int] = {}
    for index, target in enumerate(targets):
        if not isinstance(target, dict) or not isinstance(target.get("name"), str):
            continue
        name = target["name"]
        if name in names:
            problems.append((("targets", index, "name"), f"{name!r} is also the name of targets[{names[name]}]"))
        else:
            names[name] = index
        webhook = target.get("webhook")
        if isinstance(webhook, dict):
            url = webhook.get("url")
            if isinstance(url, str) and (why := url_problem(url)) is not None:
                problems.append((("targets", index, "webhook", "url"), f"the URL {why}"))
            headers = webhook.get("headers")
            for header in headers if isinstance(headers, dict) else {}:
                if str(header).lower() in RESERVED_HEADERS:
                    message = f"{header} is set by the controller itself and cannot be configured"
                    problems.append((("targets", index, "webhook", "headers", str(header)), message))
    for index, subscription in enumerate(_list(data.get("subscriptions"))):
        if not isinstance(subscription, dict):
            continue
        target = subscription.get("target")
        if isinstance(target, str) and names and target not in names:
            close = difflib.get_close_matches(target, list(names), n=1)
            hint = f"did you mean {close[0]}?" if close else f"targets: {', '.join(names)}"
            problems.append((("subscriptions", index, "target"), f"unknown target {target!r} ({hint})"))
    links = data.get("links")
    if isinstance(links, dict):
        base = links.get("baseUrl")
        if isinstance(base, str) and (why := url_problem(base)) is not None:
            problems.append((("links", "baseUrl"), f"the URL {why}"))
        elif isinstance(base, str) and (urlsplit(base).query or urlsplit(base).fragment):
            problems.append(
                (("links", "baseUrl"), "must not have a query or fragment: links are <baseUrl>/v1/gate/<token>")
            )
        ttl = links.get("ttl")
        if isinstance(ttl, str) and _seconds(ttl) is not None:
            seconds = _seconds(ttl) or 0.0
            if not 0 < seconds <= MAX_LINK_TTL:
                problems.append((("links", "ttl"), "must be more than 0s and at most 168h (7 days)"))
    delivery = data.get("delivery")
    if isinstance(delivery, dict):
        for name in ("attemptTimeout", "maxAge"):
            value = delivery.get(name)
            if isinstance(value, str) and _seconds(value) == 0:
                problems.append((("delivery", name), "must be more than 0s"))
    return problems


def _on_key(data: dict[str, Any], index: LineIndex) -> dict[str, Any]:
    """``data`` with each subscription's ``on`` under that name.

    YAML 1.1, which PyYAML speaks, reads a bare ``on`` key as the boolean true (GitHub Actions
    users know the trap). ``on: [RolledBack]`` is what everybody writes, so a subscription's key
    ``True`` is taken as ``on``, and its lines are indexed under ``on`` too.
    """
    subscriptions = data.get("subscriptions")
    if not isinstance(subscriptions, list):
        return data
    fixed: list[Any] = []
    for position, subscription in enumerate(subscriptions):
        if isinstance(subscription, dict) and "on" not in subscription and any(key is True for key in subscription):
            subscription = {"on" if key is True else key: value for key, value in subscription.items()}
            prefix = ("subscriptions", position, True)
            for path, line in list(index.lines.items()):
                if path[:3] == prefix:
                    index.lines[("subscriptions", position, "on", *path[3:])] = line
        fixed.append(subscription)
    return {**data, "subscriptions": fixed}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _seconds(text: str) -> float | None:
    try:
        return parse_duration(text)
    except ValueError:
        return None


# ---- building ---------------------------------------------------------------------------------------


class _Builder:
    """Turns a document that passed every check into the model, remembering where each secret is named."""

    def __init__(self, *, file: str, index: LineIndex) -> None:
        self.file = file
        self.index = index

    def ref(self, data: Mapping[str, Any], path: Path) -> SecretRef:
        key = "env" if "env" in data else "file"
        origin = Origin(self.file, self.index.line_for((*path, key)), format_path((*path, key)))
        return SecretRef(env=data.get("env"), file=data.get("file"), origin=origin)

    def target(self, data: Mapping[str, Any], index: int) -> Target:
        name = str(data["name"])
        path: Path = ("targets", index)
        if "slack" in data:
            return SlackTarget(name, self.ref(data["slack"]["urlFrom"], (*path, "slack", "urlFrom")))
        if "teams" in data:
            return TeamsTarget(name, self.ref(data["teams"]["urlFrom"], (*path, "teams", "urlFrom")))
        if "sns" in data:
            return SnsTarget(name, str(data["sns"]["topicArn"]))
        hook = data["webhook"]
        hook_path: Path = (*path, "webhook")
        headers = tuple(
            Header(str(header), value=value)
            if isinstance(value, str)
            else Header(
                str(header), value_from=self.ref(value["valueFrom"], (*hook_path, "headers", header, "valueFrom"))
            )
            for header, value in (hook.get("headers") or {}).items()
        )
        return WebhookTarget(
            name,
            url=hook.get("url"),
            url_from=self.ref(hook["urlFrom"], (*hook_path, "urlFrom")) if "urlFrom" in hook else None,
            secret=self.ref(hook["secretFrom"], (*hook_path, "secretFrom")) if "secretFrom" in hook else None,
            headers=headers,
        )

    def config(self, data: Mapping[str, Any]) -> NotificationConfig:
        subscriptions = tuple(
            Subscription(
                target=str(sub["target"]),
                on=frozenset(Trigger(value) for value in sub["on"]),
                namespaces=tuple(sub.get("namespaces") or ()),
                names=tuple(sub.get("names") or ()),
                opt_in=bool(sub.get("optIn", False)),
            )
            for sub in data.get("subscriptions") or []
        )
        links = data.get("links")
        delivery = data.get("delivery") or {}
        defaults = DeliveryPolicy()
        return NotificationConfig(
            targets=tuple(self.target(target, index) for index, target in enumerate(data["targets"])),
            subscriptions=subscriptions,
            links=Links(
                base_url=str(links["baseUrl"]).rstrip("/"),
                signing_key=self.ref(links["signingKeyFrom"], ("links", "signingKeyFrom")),
                ttl=parse_duration(links["ttl"]) if "ttl" in links else DEFAULT_LINK_TTL,
            )
            if isinstance(links, dict)
            else None,
            delivery=DeliveryPolicy(
                queue_size=int(delivery.get("queueSize", defaults.queue_size)),
                max_attempts=int(delivery.get("maxAttempts", defaults.max_attempts)),
                attempt_timeout=parse_duration(delivery["attemptTimeout"])
                if "attemptTimeout" in delivery
                else defaults.attempt_timeout,
                max_age=parse_duration(delivery["maxAge"]) if "maxAge" in delivery else defaults.max_age,
            ),
            source=self.file,
        )


def check_document(data: Any, *, file: str, index: LineIndex) -> tuple[NotificationConfig | None, list[SpecError]]:
    """Every check of one parsed config document; the config only when there is no error."""
    if not isinstance(data, dict):
        kind = "nothing" if data is None else type(data).__name__
        return None, [
            SpecError(file, index.start, "", f"expected a mapping with targets and subscriptions, got {kind}")
        ]
    if data.get("kind") == "LambdaRollout":
        return None, [
            SpecError(file, index.line_for(("kind",)), "kind", "this is a LambdaRollout, not a notifications config")
        ]
    data = _on_key(data, index)
    # A rule of our own says more than the schema's at the same place ("a Slack URL is a secret: use
    # urlFrom" beats "unknown field"), so at a path with both, only ours is kept.
    own = _inline_secrets(data) + _semantic(data)
    refined = {path for path, _ in own}
    schema = validation_errors(_validator(), data, hints=PATTERN_HINTS)
    problems = [(path, message) for path, message in schema if path not in refined] + own
    errors = sorted(
        {SpecError(file, index.line_for(path), format_path(path), message) for path, message in problems},
        key=lambda error: (error.line, error.path, error.message),
    )
    if errors:
        return None, errors
    return _Builder(file=file, index=index).config(data), []


def parse_notifications(text: str, *, file: str) -> tuple[NotificationConfig | None, list[SpecError]]:
    """Check the config in ``text`` (a file's content or a ConfigMap key); ``file`` names it in errors."""
    document, errors = config_document(text, file=file, expected="a mapping with targets and subscriptions")
    if document is None:
        return None, errors
    config, problems = check_document(document.data, file=file, index=document.index)
    errors += problems
    if errors:
        return None, sorted(set(errors), key=lambda error: (error.line, error.path, error.message))
    return config, []


def load_notifications(file: str) -> tuple[NotificationConfig | None, list[SpecError]]:
    """Read and check the config file ``file``; the config only when it has no error."""
    text, errors = config_text(file)
    if text is None:
        return None, errors
    return parse_notifications(text, file=file)
