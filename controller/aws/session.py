"""Building the AWS clients: credentials, region, endpoint, retries, budget and observer in one place.

Credentials and region come from the standard chain (environment, shared config and profiles, IRSA,
instance roles), so the same binary runs on a laptop, in a pod and in CI. ``endpoint_url`` (or the
``AWS_ENDPOINT_URL`` variable) points every client at moto or LocalStack; for such a local endpoint
the region defaults to us-east-1 and, when no credentials are configured at all, dummy ones are used
(local emulators accept any key, and a newcomer's ``demo`` should not need an AWS account).

botocore sends each request once; ``ApiCaller`` retries throttling, 5xx and lost connections itself,
with short jittered backoff and a budget token per attempt (``controller.aws.retries``: why not
botocore's adaptive mode); what still fails after ``max_attempts`` surfaces as ``Throttled`` (or the
error) and the engine backs that one rollout off. Our own ``Budget`` sits in front of all of it,
below AWS's quotas.

``credentials`` replaces the standard chain for one set of clients: the clients of another account
sign with an assumed role's refreshable credentials (``controller.aws.assume``), through a botocore
session of their own whose only credential provider hands out exactly those.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialProvider, CredentialResolver, Credentials

import controller
from controller.aws.budget import Budget
from controller.aws.calls import ApiCaller, ApiObserver, WriteFence
from controller.aws.cloudwatch import CloudWatchAdapter
from controller.aws.dynamodb import DynamoDbAdapter
from controller.aws.errors import AwsError
from controller.aws.events import EventsAdapter
from controller.aws.lambda_ import LambdaAdapter
from controller.aws.retries import FaultLog, RetryPolicy
from controller.aws.sns import SnsAdapter
from controller.aws.sqs import SqsAdapter
from controller.aws.sts import StsAdapter
from controller.aws.tagging import TaggingAdapter

__all__ = ["DEFAULT_LOCAL_REGION", "ApiObserver", "AwsClients", "AwsSettings", "make_clients", "resolve_region"]

DEFAULT_LOCAL_REGION = "us-east-1"


@dataclass(frozen=True)
class AwsSettings:
    """Where and how to reach AWS. None means "from the standard chain"."""

    region: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 5
    profile: str | None = None


@dataclass
class AwsClients:
    """Every adapter the controller uses, sharing one budget and one observer."""

    lambda_: LambdaAdapter
    cloudwatch: CloudWatchAdapter
    tagging: TaggingAdapter
    budget: Budget
    sts: StsAdapter
    sns: SnsAdapter
    dynamodb: DynamoDbAdapter
    # Checked right before every Lambda write leaves the process (the GitOps lease closes it).
    fence: WriteFence
    events: EventsAdapter
    sqs: SqsAdapter
    region: str = ""
    endpoint_url: str | None = None


class _Given(CredentialProvider):  # type: ignore[misc]
    """A credential provider that knows one set of credentials (an assumed role's)."""

    METHOD = "assume-role"

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def load(self) -> Credentials:
        return self._credentials


def _session(settings: AwsSettings, credentials: Credentials | None) -> boto3.session.Session:
    if credentials is not None:
        core = botocore.session.Session()
        core.register_component("credential_provider", CredentialResolver([_Given(credentials)]))
        return boto3.session.Session(botocore_session=core)
    return boto3.session.Session(profile_name=settings.profile) if settings.profile else boto3.session.Session()


def _endpoint(settings: AwsSettings) -> str | None:
    return settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def resolve_region(settings: AwsSettings) -> str:
    """The region clients built from ``settings`` use: given, else the standard chain's, else (local
    endpoint only) ``DEFAULT_LOCAL_REGION``.

    Raises ``AwsError`` (code ``NoRegion``) when no region is configured anywhere and no endpoint is
    given, because botocore's own message for it is easy to misread.
    """
    region = settings.region or _session(settings, None).region_name
    if region:
        return str(region)
    if not _endpoint(settings):
        raise AwsError(
            code="NoRegion",
            message="no AWS region configured: pass --region or set AWS_REGION / AWS_DEFAULT_REGION",
            operation="Configure",
        )
    return DEFAULT_LOCAL_REGION


def make_clients(
    settings: AwsSettings,
    *,
    budget: Budget | None = None,
    observer: ApiObserver | None = None,
    credentials: Credentials | None = None,
) -> AwsClients:
    """Create the boto3 clients and wrap them in adapters (``AwsError`` ``NoRegion``: ``resolve_region``).

    ``credentials``: sign with these instead of the standard chain's (another account's role).
    """
    session = _session(settings, credentials)
    endpoint_url = _endpoint(settings)
    region = resolve_region(settings)
    keys: dict[str, str] = {}
    if endpoint_url and session.get_credentials() is None:
        keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    config = Config(
        # One attempt per request: ApiCaller retries, within the budget (see the module docstring).
        retries={"mode": "standard", "total_max_attempts": 1},
        # Calls run in worker threads; let as many of them hold a connection as the default executor runs.
        max_pool_connections=32,
        connect_timeout=5,
        read_timeout=30,
        user_agent_extra=f"lambda-rollouts/{controller.__version__}",
    )
    # A lease call must answer well within the lease's retry period or count as failed (the lease
    # steps down on its own clock meanwhile): short timeouts, one retry.
    lease_config = config.merge(Config(connect_timeout=2, read_timeout=2))
    budget = budget if budget is not None else Budget()
    retry = RetryPolicy(attempts=max(1, settings.max_attempts))
    faults = FaultLog()

    def caller(service: str, client_config: Config = config, policy: RetryPolicy = retry) -> ApiCaller:
        client = session.client(service, region_name=region, endpoint_url=endpoint_url, config=client_config, **keys)
        return ApiCaller(client=client, service=service, budget=budget, observer=observer, retry=policy, faults=faults)

    fence = WriteFence()
    lambda_caller = caller("lambda")
    fence.install(lambda_caller.client)
    return AwsClients(
        lambda_=LambdaAdapter(lambda_caller),
        cloudwatch=CloudWatchAdapter(caller("cloudwatch")),
        tagging=TaggingAdapter(caller("resourcegroupstaggingapi")),
        budget=budget,
        sts=StsAdapter(caller("sts")),
        sns=SnsAdapter(caller("sns")),
        dynamodb=DynamoDbAdapter(caller("dynamodb", lease_config, RetryPolicy(attempts=2))),
        fence=fence,
        events=EventsAdapter(caller("events")),
        sqs=SqsAdapter(caller("sqs")),
        region=region,
        endpoint_url=endpoint_url,
    )
