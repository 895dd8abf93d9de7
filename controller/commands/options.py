"""Command-line options every verb shares, and those both daemons share, defined once.

``run``, ``plan``, ``get`` and the control verbs need the same AWS clients configured the same way
(region, endpoint, retries); ``run`` (GitOps) and ``operator`` (Kubernetes) take the same daemon
options (``add_daemon_arguments``: tick, metrics port, drift checks, shutdown grace, notifications,
push-mode alarm events, ownership, accounts), so neither daemon can silently lack one the other has.
A bad ``--ownership-config``, ``--accounts`` or ``--alarm-events`` stops any verb before it touches
anything (exit 2, every problem listed).
"""

from __future__ import annotations

import argparse
import logging
import urllib.parse
from dataclasses import dataclass

from controller.analysis.alarm_check import TOLERANCE
from controller.aws import ApiObserver, AwsClients, AwsSettings, make_clients
from controller.aws.sqs import MAX_WAIT_SECONDS
from controller.document.accounts import AccountsConfig, load_accounts
from controller.document.ownership_config import OwnershipPolicy, load_ownership
from controller.errors import UsageError
from controller.notify.config import NotificationConfig, load_notifications
from controller.notify.secrets import SecretReader, check_secrets
from controller.runtime.engine import EngineSettings

logger = logging.getLogger("controller.options")


def aws_settings(args: argparse.Namespace) -> AwsSettings:
    return AwsSettings(region=args.region, endpoint_url=args.aws_endpoint_url)


def clients_from_args(args: argparse.Namespace, *, observer: ApiObserver | None = None) -> AwsClients:
    return make_clients(aws_settings(args), observer=observer)


def add_accounts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accounts",
        metavar="FILE",
        help="YAML mapping namespace -> roleArn, externalId(From), region: where its rollouts' functions "
        "live (several accounts and regions, docs/accounts.md)",
    )


def accounts_from_args(args: argparse.Namespace, *, tenancy_warning: bool = False) -> AccountsConfig | None:
    """The ``--accounts`` config, None without one; ``UsageError`` listing every problem.

    ``tenancy_warning``: say at start that, without a config, a rollout in any namespace may name any
    role (the operator serves many namespaces).
    """
    file = getattr(args, "accounts", None)
    if file is None:
        if tenancy_warning:
            logger.warning(
                "no --accounts: a rollout in any namespace may name any spec.aws.roleArn the controller can "
                "assume; multi-tenant clusters must set one"
            )
        return None
    config, errors = load_accounts(file)
    if errors or config is None:
        raise UsageError("\n".join(str(error) for error in errors))
    logger.info("accounts config %s: %d namespaces", file, len(config.namespaces))
    return config


def add_time_scale(parser: argparse.ArgumentParser) -> None:
    """The hidden test-only option that scales every plan duration (presets' minutes to seconds)."""
    parser.add_argument("--time-scale", type=float, default=1.0, help=argparse.SUPPRESS)


def add_ownership(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ownership-config",
        metavar="FILE",
        help="YAML mapping namespace -> function name/ARN globs its rollouts may move (multi-tenant clusters)",
    )


def ownership_from_args(args: argparse.Namespace, *, tenancy_warning: bool = False) -> OwnershipPolicy | None:
    """The ``--ownership-config`` policy, None without one; ``UsageError`` listing every problem.

    ``tenancy_warning``: say at start that, without a config, only owner tags on the functions keep
    one namespace's rollouts off another's functions (the operator serves many namespaces).
    """
    file = getattr(args, "ownership_config", None)
    if file is None:
        if tenancy_warning:
            logger.warning(
                "no --ownership-config: a rollout in any namespace may move any function not tagged "
                "lambda-rollouts/owner; multi-tenant clusters must set one"
            )
        return None
    policy, errors = load_ownership(file)
    if errors or policy is None:
        raise UsageError("\n".join(str(error) for error in errors))
    logger.info("ownership config %s: %d namespaces", file, len(policy.namespaces))
    return policy


def add_daemon_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of both daemons (``run`` and ``operator``)."""
    defaults = EngineSettings()
    parser.add_argument(
        "--interval", type=float, default=defaults.interval, metavar="SECONDS", help="tick interval (default 5)"
    )
    parser.add_argument("--metrics-port", type=int, metavar="PORT", help="serve /metrics, /healthz, /readyz")
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=defaults.drift_interval,
        metavar="SECONDS",
        help="re-read each alias this often to notice changes by hand (default 600)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=defaults.shutdown_grace,
        metavar="SECONDS",
        help="on SIGTERM, how long reconciles in flight may take to finish their writes (default 8)",
    )
    parser.add_argument(
        "--notifications",
        metavar="FILE",
        help="notification targets and subscriptions (Slack, Teams, webhooks, SNS): docs/notifications.md",
    )
    parser.add_argument(
        "--alarm-events",
        default="off",
        metavar="auto|off|QUEUE_URL",
        help="alarm state changes pushed through EventBridge and SQS: a rollback at once, whatever the tick; "
        "auto creates the queue and the rule, QUEUE_URL uses yours, off polls only (default): docs/alarm-events.md",
    )
    # How long alarm events and polls may disagree before it is a mismatch, and how long one long poll of
    # the queue waits (a deleted queue is noticed at the end of the poll under way): tests shorten both.
    parser.add_argument("--alarm-events-tolerance", type=float, default=TOLERANCE, help=argparse.SUPPRESS)
    parser.add_argument("--alarm-events-wait", type=int, default=MAX_WAIT_SECONDS, help=argparse.SUPPRESS)
    add_ownership(parser)
    add_accounts(parser)
    add_time_scale(parser)


@dataclass(frozen=True)
class AlarmEvents:
    """``--alarm-events``: the platform team's ``queue_url``, or None for ``auto`` (the controller's own)."""

    queue_url: str | None = None
    # How long the events and the polls may disagree before it is counted as a mismatch.
    tolerance: float = TOLERANCE
    # Seconds one long poll of the queue waits (SQS's maximum: the fewest calls).
    wait_seconds: int = MAX_WAIT_SECONDS

    @property
    def mode(self) -> str:
        return "auto" if self.queue_url is None else "queue"


def alarm_events_from_args(args: argparse.Namespace) -> AlarmEvents | None:
    """The ``--alarm-events`` setting, None for ``off``; ``UsageError`` for anything else than a queue URL."""
    value = getattr(args, "alarm_events", "off")
    tolerance = getattr(args, "alarm_events_tolerance", TOLERANCE)
    wait = getattr(args, "alarm_events_wait", MAX_WAIT_SECONDS)
    if value == "off":
        return None
    if not 1 <= wait <= MAX_WAIT_SECONDS:
        raise UsageError(f"--alarm-events-wait {wait}: 1 to {MAX_WAIT_SECONDS} seconds")
    if value == "auto":
        return AlarmEvents(tolerance=tolerance, wait_seconds=wait)
    url = urllib.parse.urlsplit(value)
    if url.scheme not in ("https", "http") or not url.netloc or url.path.count("/") != 2 or url.path.endswith("/"):
        raise UsageError(
            f"--alarm-events {value}: not auto, off or an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)"
        )
    return AlarmEvents(queue_url=value, tolerance=tolerance, wait_seconds=wait)


def notifications_from_args(args: argparse.Namespace) -> NotificationConfig | None:
    """The ``--notifications`` config, None without one; ``UsageError`` listing every problem.

    Every secret it names (webhook URLs, signing keys) must be readable now, not at the first rollback.
    """
    file = getattr(args, "notifications", None)
    if file is None:
        return None
    config, errors = load_notifications(file)
    if config is not None:
        errors = check_secrets(config, SecretReader())
    if errors or config is None:
        raise UsageError("\n".join(str(error) for error in errors))
    logger.info("notifications config %s: %d targets", file, len(config.targets))
    return config


def engine_settings(args: argparse.Namespace, *, tenancy_warning: bool = False) -> EngineSettings:
    """The engine settings ``add_daemon_arguments`` asked for (``UsageError`` for a bad ownership config)."""
    return EngineSettings(
        interval=args.interval,
        drift_interval=args.drift_interval,
        time_scale=args.time_scale,
        shutdown_grace=args.shutdown_grace,
        ownership=ownership_from_args(args, tenancy_warning=tenancy_warning),
    )
