"""lambda-rollouts: progressive delivery for AWS Lambda aliases, declared in YAML.

The command line has one sub-command per verb. Each verb lives in ``controller.commands.<module>``
exposing ``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them together and
owns the options every verb shares.
Exit codes: 0 ok, 1 invalid input or a failed rollout, 2 usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from controller.runtime.wiring import UsageError

# verb -> (module under controller.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "check rollout documents; every error as FILE:LINE: path: message"),
    "plan": ("plan", "show what the next reconcile would do to each rollout; changes nothing"),
    "run": ("run", "the controller daemon, GitOps mode: reconcile a directory of rollout documents"),
    "operator": ("operator", "the controller daemon, Kubernetes mode (kopf)"),
    "get": ("get", "show rollouts: phase, versions, weight, step, message"),
    "promote": ("control", "advance past the current pause (--full: finish now)"),
    "abort": ("control", "roll back to the stable version now"),
    "retry": ("control", "start a failed or aborted version again"),
    "pause": ("control", "hold the rollout where it is"),
    "resume": ("control", "continue a paused rollout"),
    "undo": ("control", "send all traffic back to the previous stable version"),
    "demo": ("demo", "the embedded default: local AWS emulator, traffic, a canary promoted and one rolled back"),
    "emulator": ("emulator", "run the strict local AWS emulator (moto extended) for tests and experiments"),
}


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lambda-rollouts",
        description="Progressive delivery for AWS Lambda aliases, declared in YAML (see README.md).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_package_version()}")
    verbs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for verb, (module_name, help_text) in COMMANDS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        add_common_arguments(sub)
        module = importlib.import_module(f"controller.commands.{module_name}")
        module.add_arguments(sub, verb=verb) if module_name == "control" else module.add_arguments(sub)
        sub.set_defaults(handler=module.run, verb=verb)
    return parser


def _package_version() -> str:
    from controller import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
