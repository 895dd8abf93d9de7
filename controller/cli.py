"""lambda-rollouts: progressive delivery for AWS Lambda aliases, declared in YAML.

The command line has one sub-command per verb. Each verb lives in ``controller.commands.<module>``
exposing ``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them together and
owns the options every verb shares.

A verb's module is imported only when that verb runs: the modules pull in boto3, kopf, aiohttp or
moto, which cost most of a second to import and are not all installed (moto comes with the
``[emulator]`` extra only). So ``lambda-rollouts --help`` imports no command module at all, and
``lambda-rollouts VERB ...`` builds the arguments of that one verb. A verb that needs an extra which
is not installed says in one line what to install, before anything is imported.

Exit codes: 0 ok, 1 invalid input or a failed rollout, 2 usage errors (argparse's own convention).
Whatever a verb raises ends as one line on stderr (what failed, what to do: missing credentials or
region, an unreachable endpoint, refused credentials...) and exit 1; the traceback is printed only
with ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from controller.errors import UsageError, describe_failure


@dataclass(frozen=True)
class Command:
    module: str  # under controller.commands
    help: str  # one line, shown by ``lambda-rollouts --help``
    extra: str | None = None  # the optional dependency set the verb needs (pyproject's extras)


COMMANDS: dict[str, Command] = {
    "validate": Command("validate", "check rollout documents; every error as FILE:LINE: path: message"),
    "plan": Command("plan", "show what the next reconcile would do to each rollout; changes nothing"),
    "run": Command("run", "the controller daemon, GitOps mode: reconcile a directory of rollout documents"),
    "operator": Command("operator", "the controller daemon, Kubernetes mode (kopf)"),
    "get": Command("get", "show rollouts: phase, versions, weight, step, message"),
    "promote": Command("control", "advance past the current pause (--full: finish now)"),
    "abort": Command("control", "roll back to the stable version now"),
    "retry": Command("control", "start a failed or aborted version again"),
    "pause": Command("control", "hold the rollout where it is"),
    "resume": Command("control", "continue a paused rollout"),
    "undo": Command("control", "send all traffic back to the previous stable version"),
    "demo": Command(
        "demo",
        "the embedded default: local AWS emulator, traffic, a canary promoted and one rolled back",
        extra="emulator",
    ),
    "emulator": Command(
        "emulator", "run the strict local AWS emulator (moto extended) for tests and experiments", extra="emulator"
    ),
}

# The top-level modules whose presence shows that an extra is installed (moto[server] brings flask).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {"emulator": ("moto", "flask")}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that every verb accepts, so scripts can pass them uniformly."""
    parser.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    parser.add_argument(
        "--aws-endpoint-url",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="send AWS calls here (moto, LocalStack); default: the standard endpoint or $AWS_ENDPOINT_URL",
    )
    parser.add_argument("--log-format", choices=("json", "text"), default=None, help="default: text on a terminal")
    parser.add_argument("--log-level", default="INFO")


def build_parser(*, verbs: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The command line; every verb is listed, only those in ``verbs`` (default: all) get their arguments.

    Giving a verb its arguments imports its module, so ``main`` passes only the verb being run.
    """
    parser = argparse.ArgumentParser(
        prog="lambda-rollouts",
        description="Progressive delivery for AWS Lambda aliases, declared in YAML (see README.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb, command in COMMANDS.items():
        sub = subparsers.add_parser(verb, help=command.help, description=command.help)
        if verbs is not None and verb not in verbs:
            continue
        add_common_arguments(sub)
        module = importlib.import_module(f"controller.commands.{command.module}")
        module.add_arguments(sub, verb=verb) if command.module == "control" else module.add_arguments(sub)
        sub.set_defaults(handler=module.run, verb=verb)
    return parser


def verb_of(argv: Sequence[str]) -> str | None:
    """The verb an argument list runs, None for none or an unknown one (argparse then says why).

    The top-level options (``--help``, ``--version``) take no value, so the verb is the first
    argument that is not an option.
    """
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def missing_extra(verb: str) -> str | None:
    """One line naming the extra to install when ``verb`` needs one that is absent, else None."""
    extra = COMMANDS[verb].extra
    if extra is None or all(importlib.util.find_spec(module) is not None for module in EXTRA_MODULES[extra]):
        return None
    return f"lambda-rollouts {verb} needs the [{extra}] extra: pip install 'lambda-rollouts[{extra}]'"


def _package_version() -> str:
    from controller import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = verb_of(argv)
    if verb is not None and (problem := missing_extra(verb)) is not None:
        print(problem, file=sys.stderr)
        return 2
    args = build_parser(verbs=() if verb is None else (verb,)).parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``get -o json | head``): stop quietly, as a tool killed by SIGPIPE
        # would, and keep the interpreter's own final flush from complaining about the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        # One error path for every verb: one line saying what to do; the traceback only when asked for.
        if str(args.log_level).upper() == "DEBUG":
            traceback.print_exc()
        print(f"lambda-rollouts {verb}: error: {describe_failure(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
