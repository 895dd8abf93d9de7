"""The sequential judge: an anytime-valid comparison of the canary's failure rate with stable's.

Why it exists. Alarms, per-interval thresholds and fixed-window tests (Kayenta's Mann-Whitney) either wait
for a window to end or lose their error bound when they are looked at again and again. A weighted alias
gives what those tools must deploy a separate baseline for: canary and stable serving the same traffic at
the same time, told apart by the ``ExecutedVersion`` dimension. This module turns those counts into tests
that are valid at every look, after Lindon, Sanden, Shirikian, "Rapid Regression Detection in Software
Deployments through Sequential Testing" (KDD 2022): the controller may look every period, stop the moment
the evidence suffices, and still roll back a good canary with probability at most ``1 - confidence``.

**The data.** A look is one CloudWatch period ``[start, end)``; the shell reads, per version, the requests
(``Invocations``) and the failures (``Errors``): canary ``n_c, x_c``, stable ``n_s, x_s``. Weights are taken
as MEASURED (``n_c / (n_c + n_s)``), never as configured: Lambda routes each request at random, so a 10%
alias serves 7% one minute and 13% the next.

**The statistic.** Let ``r = p_c / p_s`` be the ratio of the two failure rates and ``r0 = 1 + maxIncrease``.
If failures are Poisson counts with means ``n_c p_c`` and ``n_s p_s``, then given the period's total
``m = x_c + x_s`` the canary's share is exactly ``x_c ~ Binomial(m, θ(r))``, ``θ(r) = n_c r / (n_c r + n_s)``,
whatever stable's own rate is. The likelihood ratio of an alternative ``r_j`` against ``r0`` for one look is

    LR_j = (θ(r_j)/θ(r0))^x_c · ((1-θ(r_j))/(1-θ(r0)))^x_s = g_j^x_c · (D_0 / D_j)^m,
    g_j = r_j / r0,  D = n_c r + n_s,

so its log is ``x_c log g_j - m log(D_j / D_0)``. Over many looks the first term only needs the cumulative
canary failures; the second, the *compensator* ``C_j = Σ m log(D_j / D_0)``, depends on each look's measured
weight and is what the state stores, one number per alternative. A look with ``m = 0`` (no failure at all),
``n_c = 0`` (no canary traffic) or ``n_s = 0`` (no stable traffic) has ``LR_j = 1``: it carries no
information and changes no e-value beyond rounding (its counts still show).

**The tests.** Each is a mixture with equal prior weights over a fixed grid of alternatives ``r_j = g_j r0``:

- *regression* (``REGRESSION_GRID``, ``g_j > 1``): H0 ``r ≤ r0`` against ``r > r0``. Rejected (roll back)
  when ``E = mean_j Π LR_j`` reaches ``1/alpha``, ``alpha = 1 - confidence``.
- *no regression* (``NO_REGRESSION_GRID``, ``g_j < 1``): H0' ``r ≥ r0`` against ``r < r0``. Rejected (the
  canary is "no worse than +maxIncrease", which lets ``promoteEarly`` end a timed pause) at ``1/alpha`` too.

**Why it is valid at every look.** Under H0 each factor has conditional expectation at most 1 given
everything before and this period's request counts, for ANY stable rate, even one that changes every
period; the mixture is then a nonnegative supermartingale starting at 1, and Ville's inequality bounds the
chance that it EVER reaches ``1/alpha`` by ``alpha``, however often we look and whenever we stop. The
factor's bound holds for Poisson failures (given ``m`` it is a binomial likelihood ratio, whose expectation
is 1 at ``θ(r0)`` and smaller at every ``θ < θ(r0)`` because it increases with ``x_c``) and, without
conditioning on ``m``, for failures that are independent Bernoulli trials per request (rates may differ
per request; the hypotheses are then about the period's mean rates): with ``a = g_j D_0/D_j`` and
``b = D_0/D_j``, ``E[a^x_c] = Π(1 + p_i(a-1)) ≤ exp(n_c p_c (a-1))`` because ``1 + y ≤ e^y``, likewise
``E[b^x_s] ≤ exp(n_s p_s (b-1))``, and the product of these bounds is the factor's expectation in the
Poisson model: exactly 1 at ``p_c = r0 p_s``, and smaller for ``p_c < r0 p_s`` since it grows with ``p_c``
(``a > 1``). The no-regression test is the mirror image (``a < 1 < b``). What is assumed, and the user
must know:

- failures are independent within a period, given its requests (a burst of correlated failures of ONE
  version is evidence against it, as it should be; a burst hitting both versions alike is just a higher
  rate that period, which the ratio ignores);
- requests are not chosen by the failures: the looks may skip periods (a controller that was down) but never
  on the strength of their failures, and a period is read only once CloudWatch has published it whole
  (``Errors`` and ``Invocations`` together). Lambda's retries of failed asynchronous events are the one
  exception we know of (requests caused by failures); they matter only where retries are a large share of
  the traffic;
- the alternatives' grid, its weights and ``r0`` are fixed before the data: the state is meaningful only
  with the settings it was folded with (a change of ``maxIncrease`` must start a new state, as a change of
  the document starts a new attempt).

**Stable without failures** (or failure rates so low that a period rarely has any): the no-regression test
gains nothing from looks without failures, so ``promoteEarly`` never ends a pause early and the pause runs
its nominal time. The option ``negligible_rate`` covers that case: "a canary proven to fail less often than
this passes whatever stable does". It adds a one-sample e-value on the canary's own counts, a mixture over
``p_f · FLOOR_GRID`` of ``(p/p_f)^X_c · exp(N_c (p_f - p))`` (valid for Poisson and, by ``1 + y ≤ e^y``,
Bernoulli failures whenever the canary's rate is at least ``p_f``), and the early pass uses the MEAN of the
two e-values, itself an e-process for the intersection "worse than +maxIncrease AND at least ``p_f``", so
the bound ``alpha`` stays whole. With zero canary failures it needs about ``N_c = ln(8/alpha) / p_f`` canary
requests (646 for ``alpha`` 1% and ``p_f`` 1%).

**The state is compact** (it lives in the Lambda tags through ``controller.core.codec``): cumulative
counts for display, the number of looks, the end of the last period folded (folding the same period
again, after a crash, changes nothing) and the start of the latest period with canary traffic, and one
integer compensator per alternative in units of ``QUANTUM`` nats. Each look's increment is rounded UP;
since an e-value is ``exp(X_c log g_j - C_j)``, the stored evidence is never above the exact one and the
bound ``alpha`` holds for the stored process too. The price is power only: at most ``QUANTUM`` nats per look
and alternative, a factor ``exp(1e-4 · looks)`` (1% after 100 looks, 10% after 1,000: 17 hours of
one-minute periods). Large counts cannot overflow: everything is computed in logs (``log1p`` for the
compensators, log-sum-exp for the mixtures); Python integers carry the counts and compensators.

**"No data or too few requests is never a pass"**: without failures no e-value moves, and ``verdict``
concludes "no regression" only after a period with canary traffic that began at or after ``since`` (the
engine passes the instant the current weight was applied).

Pure: no I/O, no clock; times are the looks' own period bounds (epoch seconds).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "FLOOR_GRID",
    "NO_REGRESSION_GRID",
    "QUANTUM",
    "REGRESSION_GRID",
    "Conclusion",
    "EValues",
    "Judgement",
    "Look",
    "SequentialSettings",
    "SequentialState",
    "evidence",
    "fold",
    "rate_text",
    "summary",
    "verdict",
]

#: Alternatives of the regression test as multiples of ``r0``: a +25% excess is worth finding eventually,
#: a x16 one in a handful of failures. Geometric, so each is found near its best speed by some point.
REGRESSION_GRID: tuple[float, ...] = (1.25, 1.6, 2.5, 4.0, 8.0, 16.0)
#: Alternatives of the no-regression test as multiples of ``r0``: with ``maxIncrease`` 0.2 an equal canary
#: sits at 0.83, next to 0.85; the lower points pay off for a large ``maxIncrease`` or a better canary.
NO_REGRESSION_GRID: tuple[float, ...] = (0.85, 0.7, 0.5, 0.3)
#: Alternatives of the ``negligible_rate`` test as fractions of that rate (0: "the canary never fails").
FLOOR_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
#: The unit of the stored compensators, in nats (see "The state is compact").
QUANTUM = 1e-4

_GRID = REGRESSION_GRID + NO_REGRESSION_GRID
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class SequentialSettings:
    """What one sequential test compares: ``maxIncrease``, ``confidence`` and the optional floor."""

    max_increase: float = 0.2  # the canary may fail up to (1 + max_increase) times as often as stable
    confidence: float = 0.99  # false rollbacks (and false early passes) at most 1 - confidence
    # A canary proven to fail less often than this (a fraction of its requests) is no regression.
    negligible_rate: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_increase) and self.max_increase >= 0):
            raise ValueError(f"max_increase must be a finite number >= 0, not {self.max_increase!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1 (exclusive), not {self.confidence!r}")
        if self.negligible_rate is not None and not 0 < self.negligible_rate < 1:
            raise ValueError(f"negligible_rate must be between 0 and 1 (exclusive), not {self.negligible_rate!r}")

    @property
    def threshold(self) -> float:
        """log10 of the e-value at which a test concludes: ``log10(1 / (1 - confidence))``."""
        return -math.log10(1.0 - self.confidence)


@dataclass(frozen=True)
class Look:
    """The counts of one period ``[start, end)`` per version, as CloudWatch sums them.

    The shell turns CloudWatch's float sums into integers, and treats a period whose failures exceed
    its requests as not yet published whole (it reads it again on a later tick).
    """

    start: float
    end: float
    canary_requests: int
    canary_failures: int
    stable_requests: int
    stable_failures: int

    def __post_init__(self) -> None:
        if not self.end > self.start:
            raise ValueError(f"a look ends after it starts ({self.start} .. {self.end})")
        for version, requests, failures in (
            ("canary", self.canary_requests, self.canary_failures),
            ("stable", self.stable_requests, self.stable_failures),
        ):
            if not 0 <= failures <= requests:
                raise ValueError(f"{version}: {failures} failures out of {requests} requests")


@dataclass(frozen=True)
class SequentialState:
    """One test's evidence so far, small enough for the durable record (a few hundred characters)."""

    name: str
    looks: int = 0  # periods folded, with or without traffic
    canary_requests: int = 0
    canary_failures: int = 0
    stable_requests: int = 0
    stable_failures: int = 0
    # Per alternative (REGRESSION_GRID then NO_REGRESSION_GRID): Σ m log(D_j / D_0), in QUANTUM, rounded up.
    compensators: tuple[int, ...] = ()
    through: float | None = None  # end of the last period folded: an older or equal look is ignored
    seen: float | None = None  # start of the latest period folded in which the canary had requests


class Conclusion(enum.StrEnum):
    REGRESSION = "Regression"  # proven worse than +maxIncrease: roll back
    NO_REGRESSION = "NoRegression"  # proven no worse than +maxIncrease: promoteEarly may end a timed pause
    CONTINUE = "Continue"  # not proven either way yet


@dataclass(frozen=True)
class EValues:
    """log10 of each test's e-value: the number to export and plot (0 = no evidence, threshold = proof)."""

    regression: float
    no_regression: float


@dataclass(frozen=True)
class Judgement:
    conclusion: Conclusion
    evidence: EValues
    threshold: float  # log10 of the bound 1 / (1 - confidence)


def fold(state: SequentialState, look: Look, *, settings: SequentialSettings) -> SequentialState:
    """``state`` with ``look`` added; a look ending at or before the last one folded changes nothing.

    Looks come in time order and never overlap (a look that starts before the last one ended and ends
    after it is refused with ``ValueError``: its requests would be counted twice).
    """
    if state.through is not None:
        if look.end <= state.through:
            return state
        if look.start < state.through:
            raise ValueError(f"{state.name}: look {look.start} .. {look.end} overlaps the last one ({state.through})")
    compensators = state.compensators or (0,) * len(_GRID)
    if len(compensators) != len(_GRID):
        raise ValueError(f"{state.name}: {len(compensators)} compensators, the grid has {len(_GRID)}")
    n_c, n_s = look.canary_requests, look.stable_requests
    m = look.canary_failures + look.stable_failures
    if m and n_c:
        r0 = 1.0 + settings.max_increase
        base = n_c * r0 + n_s
        # log(D_j / D_0) = log1p(n_c (r_j - r0) / D_0): exact for huge counts, never overflows.
        compensators = tuple(
            c + math.ceil(m * math.log1p(n_c * r0 * (g - 1.0) / base) / QUANTUM)
            for c, g in zip(compensators, _GRID, strict=True)
        )
    return dataclasses.replace(
        state,
        looks=state.looks + 1,
        canary_requests=state.canary_requests + n_c,
        canary_failures=state.canary_failures + look.canary_failures,
        stable_requests=state.stable_requests + n_s,
        stable_failures=state.stable_failures + look.stable_failures,
        compensators=compensators,
        through=look.end,
        seen=look.start if n_c else state.seen,
    )


def _log_mean_exp(terms: Sequence[float]) -> float:
    top = max(terms)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(t - top) for t in terms)) - math.log(len(terms))


def _mixture(state: SequentialState, grid: tuple[float, ...], compensators: tuple[int, ...]) -> float:
    """ln of the mean over ``grid`` of the e-values ``exp(X_c ln g_j - C_j)``."""
    x = state.canary_failures
    return _log_mean_exp([x * math.log(g) - QUANTUM * c for g, c in zip(grid, compensators, strict=True)])


def _floor(state: SequentialState, rate: float) -> float:
    """ln of the mean over ``rate · FLOOR_GRID`` of ``(p/rate)^X_c exp(N_c (rate - p))``."""
    x, n = state.canary_failures, state.canary_requests
    terms: list[float] = []
    for f in FLOOR_GRID:
        if f == 0:
            # "Never fails": refuted by the first canary failure, 0^0 = 1 before it.
            terms.append(-math.inf if x else n * rate)
        else:
            terms.append(x * math.log(f) + n * rate * (1.0 - f))
    return _log_mean_exp(terms)


def evidence(state: SequentialState, *, settings: SequentialSettings) -> EValues:
    """log10 of the regression and no-regression e-values of ``state`` (0 for a state with no look)."""
    compensators = state.compensators or (0,) * len(_GRID)
    split = len(REGRESSION_GRID)
    regression = _mixture(state, REGRESSION_GRID, compensators[:split])
    no_regression = _mixture(state, NO_REGRESSION_GRID, compensators[split:])
    if settings.negligible_rate is not None:
        no_regression = _log_mean_exp([no_regression, _floor(state, settings.negligible_rate)])
    return EValues(regression=regression / _LN10, no_regression=no_regression / _LN10)


def verdict(state: SequentialState, *, settings: SequentialSettings, since: float | None = None) -> Judgement:
    """Regression, NoRegression or Continue, with the evidence.

    A regression wins over everything. "No regression" also needs a period with canary traffic that began
    at or after ``since`` (the instant the current weight was applied), so a pause at a new weight never
    ends on evidence gathered at another one alone.
    """
    found = evidence(state, settings=settings)
    threshold = settings.threshold
    if found.regression >= threshold:
        conclusion = Conclusion.REGRESSION
    elif found.no_regression >= threshold and _seen_since(state, since):
        conclusion = Conclusion.NO_REGRESSION
    else:
        conclusion = Conclusion.CONTINUE
    return Judgement(conclusion=conclusion, evidence=found, threshold=threshold)


def _seen_since(state: SequentialState, since: float | None) -> bool:
    return state.seen is not None and (since is None or state.seen >= since)


def rate_text(failures: int, requests: int) -> str:
    """``4.1% (41/1000)``: a failure rate with its counts (``-`` without requests)."""
    if not requests:
        return f"- ({failures}/{requests})"
    percent = 100.0 * failures / requests
    shown = f"{percent:.1f}" if percent == 0 or percent >= 0.95 else f"{percent:.2g}"
    return f"{shown}% ({failures}/{requests})"


def _e_value(log10: float) -> str:
    if log10 < 4:
        value = 10.0**log10
        return f"{value:.3g}" if value < 100 else f"{value:.0f}"
    return f"10^{log10:.1f}"


def summary(state: SequentialState, *, settings: SequentialSettings, since: float | None = None) -> str:
    """One line for people: both rates with their counts, and what is proven against which bound.

    ``canary 4.1% (41/1000) vs stable 1.0% (52/5200): regression proven (e-value 142 >= 100)``
    """
    judgement = verdict(state, settings=settings, since=since)
    found, bound = judgement.evidence, _e_value(judgement.threshold)
    rates = (
        f"canary {rate_text(state.canary_failures, state.canary_requests)}"
        f" vs stable {rate_text(state.stable_failures, state.stable_requests)}"
    )
    increase = f"+{100 * settings.max_increase:.3g}%"
    if judgement.conclusion is Conclusion.REGRESSION:
        return f"{rates}: regression beyond {increase} proven (e-value {_e_value(found.regression)} >= {bound})"
    if judgement.conclusion is Conclusion.NO_REGRESSION:
        return f"{rates}: no regression beyond {increase} proven (e-value {_e_value(found.no_regression)} >= {bound})"
    waiting = "; waiting for a period at this weight" if found.no_regression >= judgement.threshold else ""
    return (
        f"{rates}: no conclusion yet (e-value {_e_value(found.regression)} for a regression beyond {increase},"
        f" {_e_value(found.no_regression)} for none; bound {bound}){waiting}"
    )
