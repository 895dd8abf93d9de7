"""The imperative shell's AWS side: the only package that imports boto3 / botocore.

Each module wraps one service in the core's vocabulary (``lambda_``, ``cloudwatch``, ``tagging``,
``sts``, ``sns``, ``events``, ``sqs``); ``session`` builds them with shared retries, budget and observer;
``errors`` is what the engine catches. Every method is ``async`` (boto3 runs in worker threads) and
takes a budget token first, so no caller can bypass the API budget.
"""

from controller.aws.budget import Budget
from controller.aws.calls import ApiObserver
from controller.aws.cloudwatch import CloudWatchAdapter
from controller.aws.errors import AwsError, Conflict, InvalidRequest, NotFound, Throttled
from controller.aws.events import EventsAdapter
from controller.aws.lambda_ import AliasState, FunctionInfo, LambdaAdapter
from controller.aws.session import AwsClients, AwsSettings, make_clients, resolve_region
from controller.aws.sns import SnsAdapter
from controller.aws.sqs import SqsAdapter
from controller.aws.sts import StsAdapter
from controller.aws.tagging import TaggingAdapter

__all__ = [
    "AliasState",
    "ApiObserver",
    "AwsClients",
    "AwsError",
    "AwsSettings",
    "Budget",
    "CloudWatchAdapter",
    "Conflict",
    "EventsAdapter",
    "FunctionInfo",
    "InvalidRequest",
    "LambdaAdapter",
    "NotFound",
    "SnsAdapter",
    "SqsAdapter",
    "StsAdapter",
    "TaggingAdapter",
    "Throttled",
    "make_clients",
    "resolve_region",
]
