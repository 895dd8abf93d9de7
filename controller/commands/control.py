"""``promote NAME [--full]``, ``abort``, ``retry``, ``pause``, ``resume``, ``undo`` in GitOps mode.

A verb does not talk to the controller: it leaves a request tag on the rollout's function
(``lambda-rollouts/request.<alias>`` = ``<verb> <id> <epoch> <caller-arn>``), which the running
controller picks up with its once-per-tick scan, handles exactly once, records in the rollout's
history and removes. So:

* IAM decides who may: the caller needs ``lambda:TagResource`` on the function (docs/iam.md,
  the operator policy); the caller's ARN comes from STS GetCallerIdentity, not from a flag;
* a verb issued while the controller is down waits on the function and is acted on when it starts;
* ``--wait`` needs no channel back either: the record names the last handled request id, so the
  verb polls the function's tags until it is ours and prints the outcome from the record.

The rollout is found by name with one managed-marker scan (``controller.commands.rollouts``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import TextIO

from controller.aws import AwsClients
from controller.commands.options import clients_from_args
from controller.commands.rollouts import (
    ManagedRollout,
    RolloutNotFound,
    add_promote_arguments,
    managed_rollouts,
    new_request,
    resolve,
)
from controller.core.codec import CodecError, decode_record, encode_request, request_key
from controller.core.types import Request
from controller.observability.logs import configure_logging

Clock = Callable[[], float]


def add_arguments(parser: argparse.ArgumentParser, *, verb: str) -> None:
    parser.add_argument("name", metavar="NAME", help="the rollout: NAME or NAMESPACE/NAME")
    if verb == "promote":
        add_promote_arguments(parser)
    parser.add_argument("--wait", action="store_true", help="wait until the controller has handled the request")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="with --wait: give up (exit 1) after S seconds (default 120)"
    )
    # How often --wait looks at the function's tags; tests make it short.
    parser.add_argument("--poll-interval", type=float, default=2.0, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    return asyncio.run(
        control(
            clients_from_args(args),
            verb=args.verb,
            name=args.name,
            full=getattr(args, "full", False),
            skip_analysis=getattr(args, "skip_analysis", False),
            wait=args.wait,
            timeout=args.timeout,
            poll=args.poll_interval,
        )
    )


async def control(
    aws: AwsClients,
    *,
    verb: str,
    name: str,
    full: bool = False,
    skip_analysis: bool = False,
    wait: bool = False,
    timeout: float = 120.0,
    poll: float = 2.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
    clock: Clock = time.monotonic,
) -> int:
    """Leave the request; with ``wait``, report how the controller handled it. Returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    if skip_analysis and not full:
        print("error: --skip-analysis goes with --full (promote NAME --full --skip-analysis)", file=err)
        return 2
    try:
        rollout = resolve(await managed_rollouts(aws), name)
        request = new_request(
            verb, full=full, skip_analysis=skip_analysis, by=await aws.sts.caller_arn(), now=time.time()
        )
        replaced = rollout.pending_request()
        await aws.lambda_.tag(rollout.arn, {request_key(rollout.alias): encode_request(request)})
    except RolloutNotFound as exc:
        print(f"error: {exc}", file=err)
        return 1
    # Any AWS error goes to the command line's one error path (AccessDenied there names the policy).
    if replaced is not None:
        print(f"note: replaced the unhandled {replaced.verb} request {replaced.id} by {replaced.by}", file=out)
    print(
        f"{request.verb} requested for {rollout.key} ({rollout.function}:{rollout.alias}) by {request.by} "
        f"(request {request.id}); the controller acts on it at its next tick",
        file=out,
    )
    if not wait:
        return 0
    return await wait_handled(aws, rollout, request, timeout=timeout, poll=poll, out=out, err=err, clock=clock)


async def wait_handled(
    aws: AwsClients,
    rollout: ManagedRollout,
    request: Request,
    *,
    timeout: float,
    poll: float,
    out: TextIO,
    err: TextIO,
    clock: Clock = time.monotonic,
) -> int:
    """Poll the function's tags until the record names ``request`` as handled; print the outcome."""
    deadline = clock() + timeout
    while True:
        tags = await aws.lambda_.list_tags(rollout.arn)
        try:
            record = decode_record(rollout.alias, tags)
        except CodecError as exc:
            print(f"error: unreadable record: {exc}", file=err)
            return 1
        if record is not None and record.last_request == request.id:
            if record.request_ignored:
                print(f"error: {rollout.key}: {record.request_ignored}", file=err)
                return 1
            print(f"{rollout.key}: {record.phase} ({record.reason}): {record.message}", file=out)
            return 0
        pending = tags.get(request_key(rollout.alias), "")
        if request.id not in pending.split():
            # Not handled and gone: someone else's request replaced ours before the controller saw it.
            print(f"error: request {request.id} was replaced before it was handled: {pending!r}", file=err)
            return 1
        if clock() >= deadline:
            print(
                f"error: timed out after {timeout:g}s: request {request.id} is not handled yet "
                "(is the controller running for this rollout?)",
                file=err,
            )
            return 1
        await asyncio.sleep(poll)
