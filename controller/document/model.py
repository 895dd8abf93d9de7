"""The typed, validated form of a LambdaRollout document.

Everything downstream (plans, ``decide``, the shell) works on these frozen structs rather than on
dicts, so a field can only be misspelt once: in the loader that builds them. Durations are plain
seconds (``float``); the loader parses ``90s`` / ``5m`` / ``1h``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SetWeight:
    """Send ``weight`` percent (1-100) of the alias's traffic to the new version."""

    weight: int


@dataclass(frozen=True)
class Pause:
    """Hold the current weight for ``duration`` seconds, or until ``promote`` when it is None."""

    duration: float | None = None


Step = SetWeight | Pause


@dataclass(frozen=True)
class PresetStrategy:
    """A CodeDeploy Lambda deployment configuration, by its canonical name (e.g. ``Canary10Percent5Minutes``)."""

    name: str


@dataclass(frozen=True)
class CanaryStrategy:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class LinearStrategy:
    step_percent: int
    interval: float


@dataclass(frozen=True)
class AllAtOnceStrategy:
    pass


@dataclass(frozen=True)
class BlueGreenStrategy:
    """The new version goes to ``preview_alias`` first; one cut-over moves the main alias.

    The outgoing version stays reachable on ``previous_alias`` so ``undo`` is one alias update.
    Without ``auto_promote`` the cut-over waits for ``promote``; with it, for ``auto_promote_after``.
    """

    preview_alias: str
    previous_alias: str | None = None
    auto_promote: bool = False
    auto_promote_after: float | None = None


Strategy = PresetStrategy | CanaryStrategy | LinearStrategy | AllAtOnceStrategy | BlueGreenStrategy


@dataclass(frozen=True)
class Publish:
    """Publish ``$LATEST`` as a new version, only if its code hash is ``code_sha256``."""

    code_sha256: str
    description: str | None = None


# Which version's traffic a metric query measures: the new version (ExecutedVersion = canary), the
# stable one (ExecutedVersion = stable), or the whole alias (no ExecutedVersion dimension).
MetricScope = Literal["canary", "stable", "alias"]


@dataclass(frozen=True)
class MetricQuery:
    """One CloudWatch metric statistic; ``id`` names it in a metric-math ``expression``."""

    id: str
    metric_name: str
    stat: str  # Sum | Average | Minimum | Maximum | SampleCount | pNN
    namespace: str = "AWS/Lambda"


@dataclass(frozen=True)
class Threshold:
    """A measured value above ``max`` or below ``min`` fails the measurement."""

    max: float | None = None
    min: float | None = None


@dataclass(frozen=True)
class CompareToStable:
    """Canary-vs-stable judge: the same query scoped to the stable version is the baseline."""

    max_ratio: float | None = None  # canary may be at most this many times the stable value
    max_increase: float | None = None  # canary may exceed the stable value by at most this much


@dataclass(frozen=True)
class Metric:
    """A metric the controller measures itself, per version, while the new version has traffic.

    A plain metric is one query (id ``m``) and no expression; an expression-based one is several
    queries combined by ``expression`` (CloudWatch metric math over the query ids).
    """

    name: str
    queries: tuple[MetricQuery, ...]
    expression: str | None = None
    scope: MetricScope = "canary"
    period: float = 60.0  # CloudWatch aggregation period of one measurement
    interval: float = 60.0  # how often it is measured
    threshold: Threshold | None = None
    compare_to_stable: CompareToStable | None = None
    failure_limit: int = 1  # consecutive failed measurements that fail the rollout
    inconclusive_limit: int = 3  # consecutive no-data measurements tolerated
    min_samples: int | None = None  # fewer Invocations than this in the period is no data


# Lambda's own metrics: scoped per version by Lambda's dimensions, not by the document's.
LAMBDA_NAMESPACE = "AWS/Lambda"


@dataclass(frozen=True)
class CountMetric:
    """A CloudWatch metric whose ``Sum`` over a period is a count (requests, failures)."""

    metric_name: str
    namespace: str = LAMBDA_NAMESPACE


@dataclass(frozen=True)
class SequentialTest:
    """An anytime-valid comparison of the canary's failure rate with stable's (``controller.core.sequential``).

    Each period, ``failures`` and ``total`` are summed per version: for ``AWS/Lambda`` metrics by
    Lambda's own dimensions (``FunctionName``, ``Resource`` = ``function:alias``, ``ExecutedVersion``),
    for custom ones by ``version_dimension`` = the version plus ``dimensions``.
    """

    name: str
    failures: CountMetric = CountMetric("Errors")
    total: CountMetric = CountMetric("Invocations")
    version_dimension: str = "ExecutedVersion"
    # Extra dimensions of custom metrics, as sorted (name, value) pairs.
    dimensions: tuple[tuple[str, str], ...] = ()
    period: float = 60.0
    max_increase: float = 0.2  # the canary may fail up to 1 + max_increase times as often as stable
    confidence: float = 0.99  # false rollbacks (and false early passes) at most 1 - confidence
    negligible_rate: float | None = None  # a canary proven to fail less often than this passes
    # A period is read this long after it ends: CloudWatch must have published all of it.
    publication_delay: float = 90.0


@dataclass(frozen=True)
class Analysis:
    alarms: tuple[str, ...] = ()
    metrics: tuple[Metric, ...] = ()
    sequential: tuple[SequentialTest, ...] = ()
    # A timed pause ends once every sequential test proved "no regression" at the current weight.
    promote_early: bool = False


@dataclass(frozen=True)
class Concurrency:
    reserved: int | None = None
    provisioned: int | None = None
    # How long the new version may take to become READY before the rollout is Degraded.
    warmup_timeout: float = 900.0


@dataclass(frozen=True)
class AsyncInvoke:
    maximum_retry_attempts: int | None = None
    maximum_event_age_seconds: int | None = None
    on_success: str | None = None
    on_failure: str | None = None


@dataclass(frozen=True)
class Hook:
    """A lifecycle check: a Lambda function to invoke, or a URL to POST to. Passing = success."""

    function: str | None = None
    url: str | None = None
    timeout: float = 60.0


@dataclass(frozen=True)
class Hooks:
    before_allow_traffic: Hook | None = None
    after_allow_traffic: Hook | None = None


@dataclass(frozen=True)
class AwsTarget:
    """``spec.aws``: where the function lives, when not where the controller's own credentials are.

    ``role_arn`` is assumed (with ``external_id`` when its trust policy asks for one) to act in its
    account; ``region`` is the function's region. None fields come from the namespace's entry of the
    controller's ``--accounts`` config, else from the controller itself (``controller.document.accounts``).
    """

    role_arn: str | None = None
    external_id: str | None = field(default=None, repr=False)
    region: str | None = None


# What to do when the alias was moved by hand: report it and stop (Hold), or write our state back (Revert).
DriftPolicy = Literal["Hold", "Revert"]


@dataclass(frozen=True)
class RolloutSpec:
    """One LambdaRollout: where it comes from (namespace/name) and what it wants."""

    namespace: str
    name: str
    function_name: str
    alias: str
    strategy: Strategy
    version: str | None = None
    publish: Publish | None = None
    analysis: Analysis = field(default_factory=Analysis)
    concurrency: Concurrency | None = None
    async_invoke: AsyncInvoke | None = None
    hooks: Hooks = field(default_factory=Hooks)
    paused: bool = False
    progress_deadline: float | None = None
    revert_on_deletion: bool = False
    generation: int = 0
    drift_policy: DriftPolicy = "Hold"
    # Notification targets this rollout opts in to (``spec.notifications``; the controller's config
    # defines them, and which subscriptions need an opt-in).
    notifications: tuple[str, ...] = ()
    # ``spec.aws``: the account (role) and region of the function; None: the namespace's or the controller's.
    aws: AwsTarget | None = None

    @property
    def key(self) -> str:
        """The rollout's identity across sources: ``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @classmethod
    def placeholder(cls, key: str, *, function_name: str, alias: str) -> RolloutSpec:
        """A stand-in known only by its identity: for a rollout whose document is broken or gone, which
        is shown (Invalid, Orphaned) but never reconciled."""
        namespace, _, name = key.partition("/")
        return cls(
            namespace=namespace, name=name, function_name=function_name, alias=alias, strategy=AllAtOnceStrategy()
        )
