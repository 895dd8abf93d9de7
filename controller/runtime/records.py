"""The durable records on the functions: read in bulk at start-up, written ahead of alias writes.

A rollout's record lives as tags on its Lambda function (see ``controller.core.codec``), so the
controller itself is stateless and a replacement on another host resumes exactly. This module keeps
the shell's copy of each managed function's tags, which makes writes minimal (only changed keys are
sent, leftovers of a longer previous record are removed) and lets the start-up cost be ONE
``GetResources`` scan of the managed marker instead of one read per rollout.

Several rollouts may share a function (one per alias): writes to the same function are serialised
by a per-function lock because the managed marker tag is shared between them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.aws import AwsClients
from controller.core.codec import (
    MANAGED_KEY,
    decode_managed,
    decode_record,
    decode_request,
    encode_managed,
    encode_record,
    fit_record,
    request_key,
    stale_record_keys,
)
from controller.core.ownership import OWNER_TAG
from controller.core.types import Record, Request
from controller.document.names import function_name_of


@dataclass
class FunctionTags:
    """What the shell knows of one function: its ARN and its tags as last read or written."""

    arn: str
    tags: dict[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # When the owner tag was last read from AWS (monotonic seconds): it is the one tag others set.
    owner_read_at: float = field(default_factory=time.monotonic)


class RecordStore:
    """Reads and writes records (and the managed marker) on the functions; one per controller."""

    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self._functions: dict[str, FunctionTags] = {}
        # Decoded records by (function ARN, alias): decoding is the costly part of an idle tick.
        self._records: dict[tuple[str, str], Record | None] = {}

    async def scan_managed(self) -> None:
        """Learn every managed function's tags with one paginated ``GetResources`` call."""
        found = await self._aws.tagging.functions_with_tag(MANAGED_KEY)
        for arn, tags in found.items():
            self._functions[function_name_of(arn)] = FunctionTags(arn=arn, tags=dict(tags))

    def managed(self) -> dict[str, FunctionTags]:
        """Functions known so far, by short name (after ``scan_managed``: every managed one)."""
        return dict(self._functions)

    async def function(self, function: str) -> FunctionTags | None:
        """The function's tags, reading them if unknown: ONE ``GetFunction`` (outside the control-plane
        quota) gives its ARN and tags; a function the start-up scan found costs nothing."""
        name = function_name_of(function)
        known = self._functions.get(name)
        if known is not None:
            return known
        info = await self._aws.lambda_.get_function(function)
        if info is None:
            return None
        known = self._functions.setdefault(name, FunctionTags(arn=info.arn, tags=dict(info.tags)))
        return known

    def known(self, function: str) -> FunctionTags | None:
        """The function's cached tags, or None when they were never read (no AWS call)."""
        return self._functions.get(function_name_of(function))

    def forget(self, function: str) -> None:
        """Drop the cached tags, e.g. after the function vanished, so the next read starts afresh."""
        fn = self._functions.pop(function_name_of(function), None)
        if fn is not None:
            self._records = {k: v for k, v in self._records.items() if k[0] != fn.arn}

    def record(self, fn: FunctionTags, alias: str) -> Record | None:
        """The rollout's durable record as last read or written (``CodecError`` when corrupt)."""
        key = (fn.arn, alias)
        if key not in self._records:
            self._records[key] = decode_record(alias, fn.tags)
        return self._records[key]

    async def persist(self, fn: FunctionTags, *, alias: str, key: str, record: Record, priority: bool = False) -> None:
        """Write ``record`` (and this rollout's managed-marker entry), sending only changed tags.

        ``priority``: the record is part of a rollback, served first by the API budget.
        """
        async with fn.lock:
            # What a reader will decode: the encoder may trim old history to fit the tag limits.
            record = fit_record(record)
            wanted = encode_record(alias, record)
            marker = decode_managed(fn.tags.get(MANAGED_KEY, ""))
            if marker.get(alias) != key:
                marker[alias] = key
                wanted[MANAGED_KEY] = encode_managed(marker)
            changed = {k: v for k, v in wanted.items() if fn.tags.get(k) != v}
            stale = stale_record_keys(alias, fn.tags, wanted)
            if changed:
                await self._aws.lambda_.tag(fn.arn, changed, priority=priority)
                fn.tags.update(changed)
            if stale:
                await self._aws.lambda_.untag(fn.arn, stale, priority=priority)
                for k in stale:
                    fn.tags.pop(k, None)
            self._records[(fn.arn, alias)] = record

    async def refresh_owner(self, fn: FunctionTags) -> bool:
        """Re-read the function's owner tag (one ``ListTags``); True when it changed.

        Only that tag is taken from the answer: the record and the managed marker are this
        controller's own writes, so the cached copies of those stay the authority.
        """
        tags = await self._aws.lambda_.list_tags(fn.arn)
        async with fn.lock:
            fn.owner_read_at = time.monotonic()
            value = tags.get(OWNER_TAG)
            if fn.tags.get(OWNER_TAG) == value:
                return False
            if value is None:
                fn.tags.pop(OWNER_TAG, None)
            else:
                fn.tags[OWNER_TAG] = value
            return True

    async def clear_request(self, fn: FunctionTags, *, alias: str, request_id: str, priority: bool = False) -> None:
        """Remove a handled control request, once the record naming it is safely persisted.

        Only that request: the tag is read again first, and one that names another request (a newer
        verb left since this tick's scan) stays for the next tick.
        """
        async with fn.lock:
            tags = await self._aws.lambda_.list_tags(fn.arn, priority=priority)
            current = decode_request(tags.get(request_key(alias), ""))
            if current is not None and current.id == request_id:
                await self._aws.lambda_.untag(fn.arn, [request_key(alias)], priority=priority)
            fn.tags.pop(request_key(alias), None)

    async def requests(self, aliases: Iterable[str]) -> dict[tuple[str, str], Request]:
        """Pending control requests, ONE ``GetResources`` call per distinct alias name.

        Keyed by (function short name, alias). A request tag that cannot be parsed is ignored here;
        it is not ours to delete and the CLI that wrote it reports its own errors.
        """
        found: dict[tuple[str, str], Request] = {}
        for alias in sorted(set(aliases)):
            tagged = await self._aws.tagging.functions_with_tag(request_key(alias))
            for arn, tags in tagged.items():
                request = decode_request(tags.get(request_key(alias), ""))
                if request is not None:
                    found[(function_name_of(arn), alias)] = request
        return found


def managed_entries(tags: Mapping[str, str]) -> dict[str, str]:
    """alias -> ``namespace/name`` from a function's managed marker tag."""
    return decode_managed(tags.get(MANAGED_KEY, ""))
