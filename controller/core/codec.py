"""The durable record's wire form: a rollout ``Record`` encoded into Lambda function tags.

The record lives with the function (tags) so that a controller killed at any instant, or a new one
on another host, resumes exactly. Tags are a cramped store, and this module is shaped by their rules:

* at most 50 tags per function (users keep some of them), keys up to 128 characters, values up to
  256, values limited to letters, digits, spaces and ``_ . : / = + - @`` (no braces, no quotes), and
  the ``aws:`` prefix is reserved.

So a record is written as compact JSON with short field names and without default values, then
zlib, then standard base64 (whose alphabet ``A-Z a-z 0-9 + / =`` is allowed), cut into chunks of at
most 250 characters::

    lambda-rollouts/record.<alias>    = "v1 <chunk-count> <chunk0>"
    lambda-rollouts/record.<alias>.1  = "<chunk1>"   ...

One TagResource call writes every chunk at once; chunks left over from a longer previous record are
removed afterwards (``stale_record_keys``), so a reader trusts only the chunk count in chunk 0.

The field names are derived generically from the dataclasses (``dataclasses.fields``) through a
short-name table, so a field added to ``Record`` (or to a struct it holds) is encoded without touching
this module; a unit test fails until the new field gets a short name. Decoding is driven by the type
hints, so it validates as it goes and a corrupt value is reported as ``CodecError``, never as a
half-built record.

Two more small formats live here because the CLI and the controller must agree on them:

* control requests: ``lambda-rollouts/request.<alias>`` = ``<verb> <id> <epoch-seconds> <caller-arn>``;
* the managed marker: ``lambda-rollouts/managed`` = space-separated ``<alias>=<namespace>/<name>``,
  so ONE GetResources call lists every managed rollout with its record.

Pure: no boto3, no clock.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import json
import math
import re
import types
import typing
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from controller.core.sequential import SequentialSettings, SequentialState
from controller.core.types import (
    AliasRouting,
    AliasWrite,
    Announcement,
    FailedVersion,
    HistoryEntry,
    HookRun,
    MetricState,
    Record,
    Request,
    SequentialRun,
    Verb,
)

__all__ = [
    "CHUNK_SIZE",
    "FORMAT_VERSION",
    "MANAGED_KEY",
    "MAX_CHUNKS",
    "MAX_HISTORY",
    "PREFIX",
    "SHORT_NAMES",
    "CodecError",
    "decode_managed",
    "decode_record",
    "decode_request",
    "encode_managed",
    "encode_record",
    "encode_request",
    "fit_record",
    "is_valid_tag_key",
    "is_valid_tag_value",
    "record_key",
    "request_key",
    "stale_record_keys",
]

PREFIX = "lambda-rollouts/"
MANAGED_KEY = PREFIX + "managed"
FORMAT_VERSION = "v1"
#: History entries kept in the record; ``.status`` and ``get`` show the last few rollouts only.
MAX_HISTORY = 5
#: A record never takes more than this many tags, leaving room for the users' own tags.
MAX_CHUNKS = 8
#: 250 base64 characters per chunk; chunk 0 also carries "v1 N " and must stay within 256.
CHUNK_SIZE = 250

MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# AWS allows Unicode letters too; we only ever write ASCII so any emulator or proxy accepts it.
_TAG_VALUE_RE = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")
_TAG_KEY_RE = re.compile(r"[A-Za-z0-9 _.:/=+\-@]+")
_ALIAS_RE = re.compile(r"[A-Za-z0-9_-]+")
# Longest alias part of a key: "lambda-rollouts/request." (24) + alias + ".N" must fit in 128.
_MAX_ALIAS_PART = 100
# Characters we keep inside a single space-separated token (everything allowed except the space).
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.:/=+\-@]+")


class CodecError(ValueError):
    """A tag value that cannot be decoded (corrupt, truncated, unknown format) or a record that cannot fit."""


# ---- the short-name table ---------------------------------------------------------------------------

#: Short JSON names per dataclass. Every field of every dataclass reachable from ``Record`` needs an
#: entry (a unit test walks the types and fails otherwise); a missing one still works, falling back to
#: the full field name, so a new field is never silently dropped.
SHORT_NAMES: dict[type, dict[str, str]] = {
    Record: {
        "spec_hash": "h",
        "phase": "p",
        "stable": "s",
        "canary": "c",
        "previous_stable": "ps",
        "step_index": "i",
        "step_started_at": "t",
        "started_at": "st",
        "weight": "w",
        "pending": "pw",
        "paused_by_request": "pr",
        "last_request": "lr",
        "failed": "f",
        "history": "hi",
        "reason": "r",
        "message": "m",
        "hooks": "hk",
        "weight_at": "wa",
        "metrics": "mx",
        "sequential": "sq",
        "bypass": "by",
        "request_ignored": "ri",
        "steps": "n",
        "outbox": "ob",
    },
    Announcement: {
        "id": "id",
        "trigger": "tr",
        "attempt": "at",
        "at": "t",
        "version": "v",
        "stable": "s",
        "weight": "w",
        "step": "i",
        "steps": "n",
        "phase": "p",
        "reason": "r",
        "message": "m",
        "by": "b",
        "discriminator": "d",
    },
    AliasWrite: {"alias": "a", "routing": "r", "previous": "pv"},
    AliasRouting: {"primary": "p", "additional": "a", "weight": "w"},
    FailedVersion: {"version": "v", "spec_hash": "h", "reason": "r"},
    HistoryEntry: {"version": "v", "outcome": "o", "reason": "r", "at": "t", "by": "b", "detail": "d"},
    HookRun: {"name": "n", "outcome": "o", "reason": "r", "at": "t"},
    MetricState: {
        "name": "n",
        "outcome": "o",
        "failures": "f",
        "no_data": "d",
        "value": "v",
        "stable": "s",
        "at": "t",
    },
    SequentialRun: {"test": "k", "state": "e", "settings": "o"},
    SequentialSettings: {"max_increase": "i", "confidence": "c", "negligible_rate": "f"},
    SequentialState: {
        "name": "n",
        "looks": "l",
        "canary_requests": "cn",
        "canary_failures": "cx",
        "stable_requests": "sn",
        "stable_failures": "sx",
        "compensators": "g",
        "through": "t",
        "seen": "s",
    },
}


def _short(cls: type, name: str) -> str:
    return SHORT_NAMES.get(cls, {}).get(name, name)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# ---- generic, type-directed JSON conversion ------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        # Whole seconds are common; "1700000000" is two characters shorter than "1700000000.0" and
        # decodes back to the same float (the type hint says float).
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dataclass_to_json(value)
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(_to_json(v) for v in value)
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    raise CodecError(f"cannot encode a value of type {type(value).__name__}")


def _dataclass_to_json(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        default = _field_default(f)
        # Defaults are left out: most of a record is at its default most of the time.
        if default is not dataclasses.MISSING and type(value) is type(default) and value == default:
            continue
        out[_short(cls, f.name)] = _to_json(value)
    return out


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _from_json(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise CodecError(f"{where}: null is not allowed")
        errors: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _from_json(arg, value, where)
            except CodecError as exc:
                errors.append(str(exc))
        raise CodecError("; ".join(errors) or f"{where}: no type matches")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_json(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise CodecError(f"{where}: expected {len(args)} items")
        return tuple(_from_json(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is frozenset:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected a list")
        return frozenset(_from_json(arg, v, f"{where}[]") for v in value)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected an object")
        return {_from_json(key_tp, k, where): _from_json(value_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is typing.Any:
        return value
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            try:
                return tp(value)
            except ValueError:
                raise CodecError(f"{where}: {value!r} is not a valid {tp.__name__}") from None
        if dataclasses.is_dataclass(tp):
            return _dataclass_from_json(tp, value, where)
        if tp is bool:
            if not isinstance(value, bool):
                raise CodecError(f"{where}: expected a boolean")
            return value
        if tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise CodecError(f"{where}: expected an integer")
            return value
        if tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CodecError(f"{where}: expected a number")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise CodecError(f"{where}: expected a string")
            return value
    raise CodecError(f"{where}: cannot decode type {tp!r}")


def _dataclass_from_json(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise CodecError(f"{where}: expected an object")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = _short(cls, f.name)
        if key in value:
            kwargs[f.name] = _from_json(hints[f.name], value[key], f"{where}.{f.name}")
        elif _field_default(f) is dataclasses.MISSING:
            raise CodecError(f"{where}.{f.name}: missing")
    # Unknown keys are ignored on purpose: a newer controller may have added a field, and an older
    # one reading that record during a rolling upgrade must still be able to act on it.
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{where}: {exc}") from None


# ---- keys -------------------------------------------------------------------------------------------


def _alias_part(alias: str) -> str:
    if not _ALIAS_RE.fullmatch(alias):
        raise CodecError(f"invalid alias name {alias!r}: letters, digits, '-' and '_' only")
    if len(alias) <= _MAX_ALIAS_PART:
        return alias
    # Lambda allows 128-character alias names, more than a tag key can hold after our prefix; keep a
    # readable prefix and make it unique with a hash (deterministic, so readers find the same key).
    digest = hashlib.sha256(alias.encode()).hexdigest()[:16]
    return f"{alias[: _MAX_ALIAS_PART - 17]}-{digest}"


def record_key(alias: str) -> str:
    """The key of chunk 0 of ``alias``'s record; further chunks are ``<key>.1``, ``<key>.2`` ..."""
    return f"{PREFIX}record.{_alias_part(alias)}"


def request_key(alias: str) -> str:
    """The key under which the CLI leaves a control request for ``alias``'s rollout."""
    return f"{PREFIX}request.{_alias_part(alias)}"


def is_valid_tag_key(key: str) -> bool:
    return 0 < len(key) <= MAX_TAG_KEY and bool(_TAG_KEY_RE.fullmatch(key)) and not key.lower().startswith("aws:")


def is_valid_tag_value(value: str) -> bool:
    return len(value) <= MAX_TAG_VALUE and bool(_TAG_VALUE_RE.fullmatch(value))


# ---- the record ---------------------------------------------------------------------------------------


def _payload(record: Record) -> str:
    data = json.dumps(_dataclass_to_json(record), separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return base64.b64encode(zlib.compress(data.encode("utf-8"), 9)).decode("ascii")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shrinking(record: Record) -> Iterator[Record]:
    """Ever smaller variants of ``record``, least information lost first."""
    yield record
    # 1. Older history goes first: it is informational only.
    history = record.history
    while history:
        history = history[1:]
        yield dataclasses.replace(record, history=history)
    record = dataclasses.replace(record, history=())
    # 2. Long texts are cut: the reason's start says what happened; a waiting notification keeps its
    #    fields whole (trigger, version, weight, reason, who) and only its illustrating message is cut.
    record = dataclasses.replace(
        record,
        message=_truncate(record.message, 200),
        reason=_truncate(record.reason, 200),
        failed=tuple(dataclasses.replace(f, reason=_truncate(f.reason, 60)) for f in record.failed),
        outbox=_cut_messages(record.outbox, 120),
    )
    yield record
    # 3. Last resort: forget the oldest failed versions (the newest is what blocks a re-promotion).
    failed = record.failed
    while failed:
        failed = failed[1:]
        yield dataclasses.replace(record, failed=failed)
    yield dataclasses.replace(
        record,
        failed=(),
        message=_truncate(record.message, 40),
        reason=_truncate(record.reason, 40),
        outbox=_cut_messages(record.outbox, 40),
    )


def _cut_messages(outbox: tuple[Announcement, ...], limit: int) -> tuple[Announcement, ...]:
    return tuple(dataclasses.replace(entry, message=_truncate(entry.message, limit)) for entry in outbox)


def fit_record(record: Record) -> Record:
    """The record as ``encode_record`` stores it (``decode_record`` returns exactly this).

    History is kept to the newest ``MAX_HISTORY`` entries (tuples are oldest first); when the encoded
    record would still need more than ``MAX_CHUNKS`` tags, the oldest history entries, then long texts,
    then the oldest failed versions are dropped (a waiting notification's message is cut, never the
    notification). Raises ``CodecError`` if nothing makes it fit.
    """
    return _fit(record)[0]


def _fit(record: Record) -> tuple[Record, str]:
    if len(record.history) > MAX_HISTORY:
        record = dataclasses.replace(record, history=record.history[-MAX_HISTORY:])
    for candidate in _shrinking(record):
        payload = _payload(candidate)
        if len(payload) <= MAX_CHUNKS * CHUNK_SIZE:
            return candidate, payload
    raise CodecError(f"record does not fit in {MAX_CHUNKS} tags even after trimming")


def encode_record(alias: str, record: Record) -> dict[str, str]:
    """The tags holding ``record`` for ``alias`` (write them in one TagResource call)."""
    _, payload = _fit(record)
    chunks = [payload[i : i + CHUNK_SIZE] for i in range(0, len(payload), CHUNK_SIZE)] or [""]
    key = record_key(alias)
    tags = {key: f"{FORMAT_VERSION} {len(chunks)} {chunks[0]}"}
    for i, chunk in enumerate(chunks[1:], start=1):
        tags[f"{key}.{i}"] = chunk
    return tags


def decode_record(alias: str, tags: Mapping[str, str]) -> Record | None:
    """The record for ``alias`` in ``tags``; None when there is none.

    Raises ``CodecError`` with a clear message when it is corrupt, truncated or written in a format
    version this controller does not know.
    """
    key = record_key(alias)
    head = tags.get(key)
    if head is None:
        return None
    parts = head.split(" ", 2)
    if len(parts) != 3:
        raise CodecError(f"tag {key}: expected '<format> <chunk-count> <data>', got {_truncate(head, 40)!r}")
    fmt, count_text, first = parts
    if fmt != FORMAT_VERSION:
        raise CodecError(f"tag {key}: unknown record format {fmt!r} (this controller reads {FORMAT_VERSION})")
    if not count_text.isdigit() or not 1 <= int(count_text) <= 50:
        raise CodecError(f"tag {key}: invalid chunk count {count_text!r}")
    chunks = [first]
    for i in range(1, int(count_text)):
        chunk = tags.get(f"{key}.{i}")
        if chunk is None:
            raise CodecError(f"tag {key}: chunk {i} of {count_text} is missing")
        chunks.append(chunk)
    try:
        raw = zlib.decompress(base64.b64decode("".join(chunks), validate=True))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise CodecError(f"tag {key}: corrupt record ({exc})") from None
    record: Record = _dataclass_from_json(Record, data, "record")
    return record


def stale_record_keys(alias: str, tags: Mapping[str, str], new_tags: Mapping[str, str]) -> list[str]:
    """Chunk keys of ``alias``'s record present in ``tags`` that ``new_tags`` no longer writes."""
    key = record_key(alias)
    chunk = re.compile(re.escape(key) + r"(\.[0-9]+)?")
    return sorted(k for k in tags if chunk.fullmatch(k) and k not in new_tags)


# ---- control requests ----------------------------------------------------------------------------------


def _token(text: str) -> str:
    # Caller ARNs may hold characters tags refuse (',' in role session names): keep the rest readable.
    return "".join(c if _TOKEN_RE.fullmatch(c) else "_" for c in text)


def encode_request(request: Request) -> str:
    """``<verb> <id> <epoch-seconds> <caller-arn>``; characters tags refuse in the caller become ``_``."""
    if not request.id or not _TOKEN_RE.fullmatch(request.id):
        raise CodecError(f"invalid request id {request.id!r}")
    value = f"{request.verb.value} {request.id} {float(request.at)!r}"
    if request.by:
        value = f"{value} {_token(request.by)}"
    if len(value) > MAX_TAG_VALUE:
        raise CodecError("request does not fit in one tag value")
    return value


def decode_request(value: str) -> Request | None:
    """The request in ``value``; None when it is empty or not a request this controller understands.

    Lenient on purpose: a request tag is a message from a person, and a garbled one must not stop the
    rollout; the controller just ignores it (and ``get`` shows it was not acted on).
    """
    parts = value.split()
    if len(parts) not in (3, 4):
        return None
    try:
        verb = Verb(parts[0])
        at = float(parts[2])
    except ValueError:
        return None
    if not math.isfinite(at):
        return None
    return Request(id=parts[1], verb=verb, at=at, by=parts[3] if len(parts) == 4 else "")


# ---- the managed marker ----------------------------------------------------------------------------------


def encode_managed(entries: Mapping[str, str]) -> str:
    """``<alias>=<namespace>/<name>`` per rollout on the function, sorted by alias, space-separated."""
    tokens: list[str] = []
    for alias in sorted(entries):
        owner = entries[alias]
        _alias_part(alias)  # validates
        if not _TOKEN_RE.fullmatch(owner):
            raise CodecError(f"invalid rollout name {owner!r} for alias {alias!r}")
        tokens.append(f"{alias}={owner}")
    value = " ".join(tokens)
    if len(value) > MAX_TAG_VALUE:
        raise CodecError(f"too many rollouts on one function for the {MANAGED_KEY} tag ({len(value)} characters)")
    return value


def decode_managed(value: str) -> dict[str, str]:
    """alias -> ``namespace/name``; malformed entries are skipped (the record is the authority)."""
    out: dict[str, str] = {}
    for token in value.split():
        alias, sep, owner = token.partition("=")
        if sep and alias and owner and _ALIAS_RE.fullmatch(alias):
            out[alias] = owner
    return out
