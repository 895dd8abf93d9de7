"""What the terminal verbs share: finding a managed rollout by name, and making a control request.

``get`` and the control verbs (``promote``, ``abort`` ...) need no controller and no document: every
managed function carries the marker tag, so ONE ``GetResources`` scan lists every rollout with all
its tags (the record, a pending request). A person types ``orders`` or ``default/orders``; a short
name that several namespaces use is refused with the candidates rather than guessed, because a
control verb on the wrong rollout is worse than no verb at all.

``new_request`` is shared with the kubectl plugin so both modes write requests the same way (id
format, ``promote --full`` as its own verb).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.aws import AwsClients
from controller.core.codec import MANAGED_KEY, decode_managed, decode_record, decode_request, request_key
from controller.core.types import Record, Request, Verb
from controller.document.names import function_name_of


class RolloutNotFound(LookupError):
    """No rollout, or more than one, answers to the name given; the message says which."""


@dataclass(frozen=True)
class ManagedRollout:
    """One rollout as its function's tags show it (as of the scan or the last ``list_tags``)."""

    key: str  # namespace/name
    arn: str
    alias: str
    tags: Mapping[str, str]

    @property
    def function(self) -> str:
        return function_name_of(self.arn)

    def record(self) -> Record | None:
        """The durable record (``CodecError`` when it cannot be read)."""
        return decode_record(self.alias, self.tags)

    def pending_request(self) -> Request | None:
        """A request left for the controller and not handled yet."""
        return decode_request(self.tags.get(request_key(self.alias), ""))


async def managed_rollouts(aws: AwsClients) -> list[ManagedRollout]:
    """Every rollout with a managed-marker entry, from ONE paginated scan, sorted by name."""
    found = []
    for arn, tags in (await aws.tagging.functions_with_tag(MANAGED_KEY)).items():
        for alias, key in decode_managed(tags.get(MANAGED_KEY, "")).items():
            found.append(ManagedRollout(key=key, arn=arn, alias=alias, tags=tags))
    return sorted(found, key=lambda r: (r.key, r.arn, r.alias))


def matches(key: str, name: str) -> bool:
    """``name`` is the full ``namespace/name`` or the name part of ``key``."""
    return name in (key, key.split("/")[-1])


def resolve(rollouts: Iterable[ManagedRollout], name: str) -> ManagedRollout:
    """The one rollout called ``name``; ``RolloutNotFound`` when none or several are."""
    found = [r for r in rollouts if matches(r.key, name)]
    if not found:
        raise RolloutNotFound(
            f"rollout {name!r} not found: no function carries a record for it "
            "(has the controller started it? `lambda-rollouts get` lists every rollout)"
        )
    if len(found) > 1:
        names = ", ".join(sorted(f"{r.key} ({r.function}:{r.alias})" for r in found))
        raise RolloutNotFound(f"rollout name {name!r} is ambiguous; use NAMESPACE/NAME, one of: {names}")
    return found[0]


def add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--full`` and ``--skip-analysis``: the same flags for ``lambda-rollouts`` and the kubectl plugin."""
    parser.add_argument("--full", action="store_true", help="finish now: 100%% on the new version")
    parser.add_argument(
        "--skip-analysis",
        action="store_true",
        help="with --full: emergency bypass, finish even while a watched alarm or analysis fails",
    )


def new_request(verb: str, *, full: bool, by: str, now: float, skip_analysis: bool = False) -> Request:
    """A request with a fresh id; ``promote`` with ``full`` is the ``promote-full`` verb, and with
    ``skip_analysis`` too the ``promote-bypass`` verb (the emergency bypass)."""
    if skip_analysis and not (verb == "promote" and full):
        raise ValueError("--skip-analysis goes with promote --full")
    promote_full = Verb.PROMOTE_BYPASS if skip_analysis else Verb.PROMOTE_FULL
    chosen = promote_full if verb == "promote" and full else Verb(verb)
    return Request(id=uuid.uuid4().hex[:12], verb=chosen, at=now, by=by)
