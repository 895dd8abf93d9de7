"""The CRD's ``openAPIV3Schema``, turned into a JSON Schema validator with readable messages.

The CRD in ``crds/`` is the one schema: this module reads that very file (shipped inside the package
as ``controller/document/lambdarollout.yaml``, a link to ``crds/lambdarollout.yaml`` in the source tree)
and translates the Kubernetes dialect of OpenAPI v3 for ``jsonschema``:

- ``x-kubernetes-*`` keys are dropped, except ``x-kubernetes-list-type: set``, which becomes
  ``uniqueItems`` (Kubernetes forbids ``uniqueItems`` itself); ``nullable: true`` adds ``null``.
- An object with ``properties`` rejects unknown fields, as ``kubectl``'s strict field validation
  does: a misspelt ``progresDeadline`` must be an error, not a silently ignored line.
- CEL rules (``x-kubernetes-validations``) cannot run here; ``semantics`` checks the same things.

The validator's keyword functions are replaced where jsonschema's own messages would be unreadable
(``oneOf`` between required fields, ``required``, unknown fields, long enums), so every message
says what is wrong in the user's words.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.resources
from collections.abc import Iterator, Mapping
from pathlib import Path as FilePath
from typing import Any

import jsonschema
import jsonschema.validators
import yaml
from jsonschema.exceptions import ValidationError

from controller.document.errors import Path
from controller.document.presets import accepted_preset_names, unknown_preset_message

API_GROUP = "lambda.rollouts.dev"
API_VERSION = "v1alpha1"
KIND = "LambdaRollout"
CRD_FILE_NAME = "lambdarollout.yaml"

# Human words for fields whose only rule is a regular expression: "does not match '^([a-z..'" helps
# nobody. Keyed by field name; a test checks that every field with a pattern in the CRD has one.
PATTERN_HINTS: dict[str, str] = {
    "functionName": "a function name (letters, digits, - and _, up to 64) or a full function ARN without qualifier",
    "notifications[]": "a notification target name: lowercase letters, digits and -, at most 63",
    "function": "a function name or full ARN, optionally with :qualifier",
    "alias": "an alias name: letters, digits, - and _, not only digits (and never $LATEST)",
    "previewAlias": "an alias name: letters, digits, - and _, not only digits",
    "previousAlias": "an alias name: letters, digits, - and _, not only digits",
    "version": 'a published version number as a string, such as "43"',
    "codeSha256": "the base64 SHA-256 of the code, 44 characters ending in =",
    "duration": "a duration such as 90s, 5m, 1h30m",
    "interval": "a duration such as 90s, 5m, 1h30m",
    "autoPromoteAfter": "a duration such as 90s, 5m, 1h30m",
    "warmupTimeout": "a duration such as 90s, 5m, 1h30m",
    "timeout": "a duration such as 90s, 5m, 1h30m",
    "progressDeadline": "a duration such as 90s, 5m, 1h30m",
    "onSuccess": "an SQS, SNS, Lambda, EventBridge or S3 ARN",
    "onFailure": "an SQS, SNS, Lambda, EventBridge or S3 ARN",
    "url": "an http:// or https:// URL",
    "name": "a name: letters, digits, _ . and -, starting with a letter or digit",
    "id": "a query id: a lowercase letter, then letters, digits and _",
    "stat": "a statistic: Sum, Average, Minimum, Maximum, SampleCount or a percentile such as p99",
    "period": "a duration such as 90s, 5m, 1h30m",
    "roleArn": "an IAM role ARN: arn:aws:iam::ACCOUNT:role/NAME (ACCOUNT: 12 digits)",
    "externalId": "2 to 1224 letters, digits and + = , . @ : / _ -",
    "region": "an AWS region such as eu-west-1",
    "publicationDelay": "a duration such as 90s, 5m, 1h30m",
}


def crd_path() -> FilePath:
    """Where the CRD is: the package's copy when installed, else the source tree's ``crds/``."""
    packaged = importlib.resources.files("controller.document").joinpath(CRD_FILE_NAME)
    if packaged.is_file():
        return FilePath(str(packaged))
    return FilePath(__file__).resolve().parents[2] / "crds" / CRD_FILE_NAME


@functools.cache
def load_crd() -> dict[str, Any]:
    """The CustomResourceDefinition, parsed once per process."""
    crd = yaml.safe_load(crd_path().read_text(encoding="utf-8"))
    if not isinstance(crd, dict):
        raise RuntimeError(f"{crd_path()} is not a CustomResourceDefinition")
    return crd


def openapi_schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served, stored version (a deep copy: callers may mutate it)."""
    for version in load_crd()["spec"]["versions"]:
        if version["name"] == API_VERSION:
            return copy.deepcopy(version["schema"]["openAPIV3Schema"])
    raise RuntimeError(f"the CRD has no version {API_VERSION}")


def to_json_schema(node: Any) -> Any:
    """Translate a Kubernetes structural schema into plain JSON Schema (draft 7), recursively."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key == "nullable":
            continue
        # "properties" maps field names to schemas: translate the schemas, never the names.
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        else:
            out[key] = to_json_schema(value)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


# ---- keyword functions with readable messages ------------------------------------------------------

# jsonschema's own implementations, for the cases the readable versions below do not cover.
_DRAFT7_ONE_OF = jsonschema.Draft7Validator.VALIDATORS["oneOf"]
_DRAFT7_ADDITIONAL_PROPERTIES = jsonschema.Draft7Validator.VALIDATORS["additionalProperties"]


def _required_names(branches: list[Any]) -> list[str] | None:
    """The field names when every branch of a junctor is just ``{required: [name]}``, else None."""
    names = []
    for branch in branches:
        if not (isinstance(branch, dict) and set(branch) == {"required"} and len(branch["required"]) == 1):
            return None
        names.append(branch["required"][0])
    return names


def exactly_one_message(names: list[str], found: list[str]) -> str:
    message = f"exactly one of {', '.join(names)} is required"
    return f"{message} (found {', '.join(found)})" if found else message


def _one_of(validator: Any, branches: list[Any], instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    names = _required_names(branches)
    if names is None or not isinstance(instance, dict):
        yield from _DRAFT7_ONE_OF(validator, branches, instance, schema)
        return
    found = [name for name in names if name in instance]
    if len(found) != 1:
        yield ValidationError(exactly_one_message(names, found))


def _required(
    validator: Any, required: list[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    for name in required:
        if name not in instance:
            # The error points at the missing field itself, so the path names it.
            yield ValidationError("required field is missing", path=[name])


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if allowed is not False or not isinstance(instance, dict):
        yield from _DRAFT7_ADDITIONAL_PROPERTIES(validator, allowed, instance, schema)
        return
    known = list(schema.get("properties", {}))
    for name in instance:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else f" (known fields: {', '.join(known)})"
        yield ValidationError(f"unknown field{hint}", path=[name])


def _enum(validator: Any, values: list[Any], instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    if instance in values:
        return
    if set(values) == set(accepted_preset_names()):
        yield ValidationError(unknown_preset_message(instance))
    else:
        yield ValidationError(f"{instance!r} is not one of {', '.join(map(str, values))}")


def _min_properties(
    validator: Any, minimum: int, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if isinstance(instance, dict) and len(instance) < minimum:
        yield ValidationError(f"needs at least one of {', '.join(schema.get('properties', {}))}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    {
        "oneOf": _one_of,
        "required": _required,
        "additionalProperties": _additional_properties,
        "enum": _enum,
        "minProperties": _min_properties,
    },
)


def readable_validator(schema: Mapping[str, Any]) -> Any:
    """A draft 7 validator for ``schema`` whose messages are the readable ones of this module.

    Other documents of the controller (the notifications config) are checked with it, so every
    config file speaks with the same voice as a rollout document.
    """
    _Validator.check_schema(schema)
    return _Validator(schema)


@functools.cache
def _validator() -> Any:
    return readable_validator(to_json_schema(openapi_schema()))


def _message(error: ValidationError, hints: Mapping[str, str]) -> str:
    """jsonschema's message, reworded where it would quote a regular expression or a whole list."""
    field = next((element for element in reversed(error.absolute_path) if isinstance(element, str)), "")
    if error.validator == "pattern":
        hint = hints.get(field)
        return f"{error.instance!r} is not {hint}" if hint else error.message
    if error.validator == "type":
        expected = error.validator_value
        if expected == "string" and isinstance(error.instance, int | float) and not isinstance(error.instance, bool):
            return f"{error.instance!r} is not of type 'string' (quote it: \"{error.instance}\")"
        return f"{error.instance!r} is not of type {expected!r}"
    if error.validator == "maxItems":
        return f"{len(error.instance)} items, more than the limit of {error.validator_value}"
    if error.validator == "uniqueItems":
        seen: list[Any] = []
        twice: list[str] = []
        for item in error.instance:
            if item in seen and repr(item) not in twice:
                twice.append(repr(item))
            seen.append(item)
        return f"{', '.join(twice)} listed more than once"
    if error.validator in ("maxLength", "minLength"):
        limit = "at most" if error.validator == "maxLength" else "at least"
        return f"{len(error.instance)} characters; must be {limit} {error.validator_value}"
    return str(error.message)


def validation_errors(
    validator: Any, document: Any, *, hints: Mapping[str, str] = PATTERN_HINTS
) -> list[tuple[Path, str]]:
    """Every violation ``validator`` finds in ``document`` as ``(path, message)``, in document order of paths.

    ``hints`` words the rule of a field (by name) that only has a ``pattern``.
    """
    found = [(tuple(error.absolute_path), _message(error, hints)) for error in validator.iter_errors(document)]
    return sorted(set(found), key=lambda item: (tuple(str(element) for element in item[0]), item[1]))


def schema_errors(document: Mapping[str, Any]) -> list[tuple[Path, str]]:
    """Every schema violation of the LambdaRollout ``document`` as ``(path, message)``, in document order of paths."""
    return validation_errors(_validator(), document)
