"""``kubectl lambda-rollouts``: control verbs for LambdaRollouts in Kubernetes mode (a kubectl plugin).

Installed with the package as the executable ``kubectl-lambda_rollouts``, which kubectl runs for
``kubectl lambda-rollouts ...``. Every verb acts *through the resource*: it patches the annotation
``lambda.rollouts.dev/request: "<verb> <id> <epoch> <user>"`` with the user's own kubeconfig, so
Kubernetes RBAC (``patch`` on ``lambdarollouts``) decides who may promote or abort; the operator
carries the request out and records it in the rollout's history.

It shells out to ``kubectl`` rather than talking HTTP itself: kubectl is there by definition (it
runs the plugin), and it already understands every kubeconfig feature (exec credential plugins,
OIDC, client certificates, contexts) that a hand-written client would get subtly wrong.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from controller.commands.rollouts import add_promote_arguments, new_request
from controller.core.codec import encode_request
from controller.kube.names import REQUEST_ANNOTATION, RESOURCE

VERBS = ("promote", "abort", "retry", "pause", "resume", "undo", "get")


class PluginError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl lambda-rollouts", description="Drive LambdaRollouts through the resource (RBAC decides)."
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in VERBS:
        sub = verbs.add_parser(verb)
        sub.add_argument("name", metavar="NAME")
        sub.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig context's namespace")
        sub.add_argument("--context", default=None, help="kubeconfig context to use")
        if verb == "promote":
            add_promote_arguments(sub)
        if verb == "get":
            sub.add_argument("-o", "--output", choices=("text", "json"), default="text")
    return parser


def kubectl(args: argparse.Namespace, *command: str) -> str:
    """Run kubectl with the user's kubeconfig (and ``--context`` / ``-n``); its stdout or PluginError."""
    binary = shutil.which("kubectl")
    if binary is None:
        raise PluginError("kubectl not found on PATH")
    scope = [
        *(["--context", args.context] if args.context else []),
        *(["-n", args.namespace] if args.namespace else []),
    ]
    done = subprocess.run([binary, *scope, *command], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise PluginError(done.stderr.strip() or f"kubectl exited with {done.returncode}")
    return done.stdout


def whoami(args: argparse.Namespace) -> str:
    """The user as the apiserver sees them (SelfSubjectReview), else the kubeconfig's user name.

    Only informative (it lands in the rollout's history): who was *allowed* is RBAC's decision and
    the apiserver's audit log has the authoritative record.
    """
    try:
        return kubectl(args, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").strip() or "unknown"
    except (PluginError, subprocess.TimeoutExpired):
        pass
    try:
        return kubectl(args, "config", "view", "--minify", "-o", "jsonpath={.contexts[0].context.user}").strip()
    except (PluginError, subprocess.TimeoutExpired):
        return "unknown"


def send(args: argparse.Namespace) -> int:
    kubectl(args, "get", RESOURCE, args.name, "-o", "name")  # a clear error for an unknown name
    full, skip = getattr(args, "full", False), getattr(args, "skip_analysis", False)
    request = new_request(args.verb, full=full, skip_analysis=skip, by=whoami(args), now=time.time())
    patch = {"metadata": {"annotations": {REQUEST_ANNOTATION: encode_request(request)}}}
    kubectl(args, "patch", RESOURCE, args.name, "--type", "merge", "-p", json.dumps(patch))
    print(
        f"{request.verb.value} requested for {args.name} (request {request.id}); the controller acts on its next tick"
    )
    return 0


def describe(obj: dict[str, Any]) -> str:
    """A few lines a person reads: phase, traffic split, step, reason and message, errors, history."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    lines = [
        f"{meta.get('namespace')}/{meta.get('name')}: {status.get('phase', 'Pending')}",
        f"  stable {status.get('stableVersion') or '-'}, canary {status.get('canaryVersion') or '-'}"
        f" at {status.get('canaryWeight', 0)}%, step {status.get('currentStep', 0)}/{status.get('steps', 0)}",
    ]
    if status.get("reason") or status.get("message"):
        lines.append(f"  {status.get('reason', '')}: {status.get('message', '')}")
    lines += [f"  error: {error}" for error in status.get("errors") or ()]
    for entry in status.get("history") or ():
        lines.append(
            f"  history: {entry.get('version')} {entry.get('outcome')} ({entry.get('reason')}) {entry.get('at')}"
        )
    pending = (meta.get("annotations") or {}).get(REQUEST_ANNOTATION)
    if pending:
        lines.append(f"  pending request: {pending}")
    return "\n".join(lines)


def get(args: argparse.Namespace) -> int:
    obj = json.loads(kubectl(args, "get", RESOURCE, args.name, "-o", "json"))
    print(json.dumps(obj.get("status") or {}, indent=2) if args.output == "json" else describe(obj))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "skip_analysis", False) and not args.full:
        print("error: --skip-analysis goes with --full (promote NAME --full --skip-analysis)", file=sys.stderr)
        return 2  # a usage error, as for ``lambda-rollouts promote``
    try:
        return get(args) if args.verb == "get" else send(args)
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
