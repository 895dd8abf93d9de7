"""Where each rollout's function lives: ``spec.aws``, the ``--accounts`` config, and the rules between them.

One controller serves several AWS accounts and regions. A rollout's **scope** is the role the
controller assumes to act on its function (None: the controller's own credentials), the external ID
that role's trust policy asks for, and the region (None: the controller's ``--region``). Two places
may say it: the document (``spec.aws``) and the controller's ``--accounts FILE``, a YAML mapping
namespace -> entry, read once at start::

    payments:
      roleArn: arn:aws:iam::111111111111:role/lambda-rollouts
      externalIdFrom: {env: PAYMENTS_EXTERNAL_ID}   # or {file: /etc/...}, or externalId: "..."
      region: eu-west-1
    search:
      region: us-west-2        # the controller's own account, another region

``resolve`` decides, and why it decides so:

- **The config is the operator's word and a document cannot leave it.** A role is a privilege: the
  controller's credentials may be trusted by every team's role, so a document that could name any
  role could deploy into another team's account. In a namespace the config lists, a document may
  leave ``roleArn`` out or repeat the entry's; naming another is refused (the rollout is Invalid,
  nothing is assumed). With a config, a namespace it does not list runs with the controller's own
  credentials, and a role named there is refused too. Without a config, a document may name any role
  (one team, one repository: whoever writes the documents is trusted, as without
  ``--ownership-config``); multi-tenant clusters must set ``--accounts``.
- **The external ID goes with the role.** With the entry's role, the entry's external ID is used; a
  document that gives another is refused rather than silently overridden (it would be a wrong guess
  either way). AWS treats the external ID as configuration, not a secret, so it may be written in the
  document or the config (``externalId``); the config may also read it from an environment variable
  or a file (``externalIdFrom``), for those who keep it out of git. A *document* may not name an
  environment variable or file: its value would be sent, as ``ExternalId``, to whatever role ARN the
  document names, and a role in its author's own account would log it in CloudTrail.
- **The region is the document's to choose.** A team's functions may sit in several regions of its
  account, and the region grants nothing the role does not: ``spec.aws.region`` wins over the entry's,
  which wins over the controller's ``--region``.

Like the ownership config, the file is read with the line-aware reader of rollout documents and
every problem comes back at once (``FILE:LINE: path: message``); a daemon given a bad file, or an
``externalIdFrom`` it cannot read, refuses to start.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.document.documents import config_document, config_text
from controller.document.errors import Path, SpecError, format_path
from controller.document.model import AwsTarget
from controller.document.semantics import is_namespace

# The same rules the CRD's spec.aws has.
_ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::([0-9]{12}):role/[a-zA-Z0-9+=,.@_/-]{1,512}$")
_EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9+=,.@:/_-]{2,1224}$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$")
_ENTRY_KEYS = ("roleArn", "externalId", "externalIdFrom", "region")
#: The account of the controller's own credentials, in labels, shard names and logs.
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class Scope:
    """Where a rollout's function lives: the role to assume (None: the controller's own credentials),
    its external ID, and the region (None: the controller's)."""

    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    region: str | None = None

    @property
    def account(self) -> str:
        """The role's account id, ``default`` for the controller's own credentials."""
        match = _ROLE_ARN.match(self.role_arn) if self.role_arn else None
        return match.group(1) if match else DEFAULT_ACCOUNT

    def __str__(self) -> str:
        where = self.role_arn or "the controller's own credentials"
        return f"{where} in {self.region or 'the default region'}"


@dataclass(frozen=True)
class Refused:
    """A document's ``spec.aws`` the rules refuse: ``path: message``, shown on the rollout."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class AccountsConfig:
    """The loaded ``--accounts`` config: each listed namespace's scope, and the file (for messages)."""

    namespaces: Mapping[str, Scope] = field(default_factory=dict)
    source: str = ""


def resolve(aws: AwsTarget | None, *, namespace: str, config: AccountsConfig | None) -> Scope | Refused:
    """The scope of a rollout in ``namespace`` whose document says ``aws`` (see the module docstring)."""
    given = aws or AwsTarget()
    entry = config.namespaces.get(namespace) if config is not None else None
    if config is None:
        return Scope(role_arn=given.role_arn, external_id=given.external_id, region=given.region)
    allowed = entry.role_arn if entry is not None else None
    if given.role_arn is not None and given.role_arn != allowed:
        whose = f"namespace {namespace}'s role is {allowed}" if allowed else f"namespace {namespace} may assume no role"
        return Refused("spec.aws.roleArn", f"{given.role_arn} is not allowed: {whose} ({config.source})")
    external_id = entry.external_id if entry is not None else None
    if given.external_id is not None and given.external_id != external_id:
        return Refused(
            "spec.aws.externalId",
            f"differs from the external ID {config.source} gives namespace {namespace}'s role; leave it out",
        )
    region = given.region or (entry.region if entry is not None else None)
    return Scope(role_arn=allowed, external_id=external_id, region=region)


def load_accounts(
    file: str, *, environ: Mapping[str, str] | None = None
) -> tuple[AccountsConfig | None, list[SpecError]]:
    """Read and check ``file`` (and every ``externalIdFrom`` it names); the config only when it has no error."""
    text, errors = config_text(file)
    if text is None:
        return None, errors
    document, errors = config_document(text, file=file, expected="a mapping of namespace to account entries")
    if document is None:
        return None, errors
    namespaces, problems = _check(document.data, environ=os.environ if environ is None else environ)
    errors += [SpecError(file, document.index.line_for(path), format_path(path), message) for path, message in problems]
    if errors:
        return None, sorted(set(errors), key=lambda e: (e.line, e.path, e.message))
    return AccountsConfig(namespaces=namespaces, source=file), []


def _check(data: Any, *, environ: Mapping[str, str]) -> tuple[dict[str, Scope], list[tuple[Path, str]]]:
    if not isinstance(data, dict):
        return {}, [((), f"expected a mapping of namespace to account entries, got {_kind(data)}")]
    if data.get("kind") == "LambdaRollout":
        return {}, [(("kind",), "this is a LambdaRollout document, not an accounts config")]
    namespaces: dict[str, Scope] = {}
    problems: list[tuple[Path, str]] = []
    for namespace, entry in data.items():
        path: Path = (str(namespace),)
        if not is_namespace(namespace):
            problems.append((path, f"{namespace!r} is not a valid namespace (lowercase letters, digits and -)"))
        if not isinstance(entry, dict) or not entry:
            problems.append((path, f"expected a mapping with roleArn, externalId(From), region; got {_kind(entry)}"))
            continue
        scope, found = _entry(path, entry, environ=environ)
        problems += found
        namespaces[str(namespace)] = scope
    return namespaces, problems


def _entry(path: Path, entry: Mapping[str, Any], *, environ: Mapping[str, str]) -> tuple[Scope, list[tuple[Path, str]]]:
    problems: list[tuple[Path, str]] = [
        ((*path, str(key)), f"unknown field (known: {', '.join(_ENTRY_KEYS)})")
        for key in entry
        if key not in _ENTRY_KEYS
    ]
    role, region = entry.get("roleArn"), entry.get("region")
    if role is not None and not (isinstance(role, str) and _ROLE_ARN.match(role)):
        problems.append(((*path, "roleArn"), f"{role!r} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"))
    if region is not None and not (isinstance(region, str) and _REGION.match(region)):
        problems.append(((*path, "region"), f"{region!r} is not an AWS region (such as eu-west-1)"))
    external_id: str | None = None
    if "externalId" in entry and "externalIdFrom" in entry:
        problems.append(((*path, "externalIdFrom"), "give externalId or externalIdFrom, not both"))
    elif "externalId" in entry:
        external_id = entry["externalId"] if isinstance(entry["externalId"], str) else None
        if external_id is None:
            problems.append(((*path, "externalId"), f"expected a string, got {_kind(entry['externalId'])}"))
    elif "externalIdFrom" in entry:
        external_id, problem = _read_external_id(entry["externalIdFrom"], environ=environ)
        if problem is not None:
            problems.append(((*path, "externalIdFrom"), problem))
    if external_id is not None and not _EXTERNAL_ID.match(external_id):
        # The value is not repeated: whoever keeps it in a file or a variable would rather not see it.
        problems.append(((*path, "externalId"), "must be 2 to 1224 letters, digits and + = , . @ : / _ -"))
    if external_id is not None and role is None:
        problems.append(((*path, "externalId"), "an external ID is only sent when assuming a role; set roleArn too"))
    scope = Scope(
        role_arn=role if isinstance(role, str) else None,
        external_id=external_id,
        region=region if isinstance(region, str) else None,
    )
    return scope, problems


def _read_external_id(source: Any, *, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(value, None) from ``{env: NAME}`` or ``{file: PATH}``, else (None, why not)."""
    if not isinstance(source, dict) or len(source) != 1 or not ({"env", "file"} & set(source)):
        return None, "expected {env: VARIABLE} or {file: PATH}"
    if "env" in source:
        name = source["env"]
        value = environ.get(name) if isinstance(name, str) else None
        return (value.strip(), None) if value else (None, f"environment variable {name} is not set")
    file = source["file"]
    try:
        with open(str(file), encoding="utf-8") as stream:
            return stream.read().strip(), None
    except OSError as problem:
        return None, f"cannot read {file}: {problem.strerror or problem}"


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


__all__ = ["DEFAULT_ACCOUNT", "AccountsConfig", "Refused", "Scope", "load_accounts", "resolve"]
