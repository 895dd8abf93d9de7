"""Detection benchmark: the sequential judge against an alarm, a threshold and a Mann-Whitney judge.

Every judge sees the SAME simulated traffic of a canary pause, and is judged on what matters: how soon a
bad canary is rolled back, how many failed requests it served until then (its blast radius), how often a
good one is rolled back for nothing, and, for the sequential judge, how soon ``promoteEarly`` lets a good
one through.

Traffic. Requests arrive as a Poisson process (1, 10 or 100 per second), Lambda routes each one at
random to the canary with the alias weight (1%, 10%, 50%), and each fails independently: 1% on stable,
1x (the null), 1.5x, 2x, 5x or 20x that on the canary; so, by Poisson thinning, each version's failures
and successes of a period are independent Poisson counts, which is how they are drawn. Two more
scenarios: x1.2 (within ``maxIncrease``: not a regression) and a downstream incident (canary = stable,
both failing 3x as often from minute 10 to 15). CloudWatch sums the counts per 60 s period
and publishes each period ``--delay`` seconds after it ends (90 s by default: standard metrics take 1-2
minutes); every judge decides the moment a period is published, so the comparison charges no judge any
evaluation lag of its own (real alarms add some: users report 4-9 minutes from breach to ALARM on
one-minute alarms). The canary holds its weight for a 30-minute pause and would then be promoted; a
rollback is counted only if it happens within the pause, so periods published after it are not judged.

Judges:

- ``alarm MofN``: the alias-level alarm CodeDeploy watches: Sum of ``Errors`` over the alias (both
  versions), period 60 s, ALARM when N of N consecutive datapoints exceed the threshold (N = 1, 2);
- ``threshold xN``: a per-interval canary check as Argo Rollouts and Flagger run it: the canary's error
  rate of the interval (60 s) above a threshold N times in a row (N = 1, 3); a period without canary
  traffic is no measurement and breaks the run;
- ``Mann-Whitney``: Kayenta-like, on fixed 10-period windows: the canary's per-period error rates against
  stable's over the same window, one-sided Mann-Whitney z (normal approximation with the tie
  correction) and an effect-size tolerance: it fails when the canary's mean rate is more than
  ``1 + maxIncrease`` times stable's and z is above the threshold;
- ``sequential``: ``controller.core.sequential`` (imported, not copied), ``maxIncrease`` 0.2, confidence
  0.99, folded one look per published period. Its rollback columns use the regression test alone over the
  whole pause; ``promoteEarly`` is reported apart (the first look at which it concludes "no regression",
  if no regression was concluded before).

Calibration. The baselines have no error bound of their own, so each gets, per cell (weight, traffic), the
most sensitive threshold whose false rollbacks in that cell's null runs are no more than the sequential
judge's there (``--calibrate bound``: no more than 1 - confidence = 1%, more than the sequential judge
makes): in-sample, per cell, on a stable rate that never moves, the most favourable setting they could
have. The sequential judge is not tuned: its false-rollback rate is bounded by 1% whatever the cell, and
for any canary up to 1 + maxIncrease times as bad as stable (the table shows the rollbacks at x1.2 too).

Usage: ``python bench/detection.py [--quick] [--calibrate ours|bound] [--null-runs N] [--runs N] [--delay S]
[--workers N]``.
Prints Markdown tables; asserts nothing. Seeded: the same options print the same figures.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import NamedTuple

from controller.core.sequential import Conclusion, Look, SequentialSettings, SequentialState, fold, verdict

PERIOD = 60.0
PAUSE = 1800.0
STABLE_RATE = 0.01
WEIGHTS = (0.01, 0.1, 0.5)
TRAFFIC = (1.0, 10.0, 100.0)
MULTIPLIERS = (1.0, 1.5, 2.0, 5.0, 20.0)
SETTINGS = SequentialSettings(max_increase=0.2, confidence=0.99)
# The same judge with a wider tolerance, for the promoteEarly column only: what proving "no regression"
# costs depends on how much worse the canary may be.
WIDE = SequentialSettings(max_increase=1.0, confidence=0.99)
# 10 periods: with 5 against 5 the largest z (2.61) comes by chance once in 252 windows, so no threshold
# gives a false-rollback rate near 1% (it is either about 2% or zero).
MW_WINDOW = 10
# Within maxIncrease: not a regression by the sequential judge's definition, so a rollback is a false one.
BOUNDARY = 1.0 + SETTINGS.max_increase
# A downstream incident: both versions fail INCIDENT_FACTOR times as often for periods [start, end).
INCIDENT = (10, 15)
INCIDENT_FACTOR = 3.0
JUDGES = ("alarm 1of1", "alarm 2of2", "threshold x1", "threshold x3", "Mann-Whitney", "sequential")
BASELINES = JUDGES[:-1]


class Scenario(NamedTuple):
    multiplier: float  # the canary's failure rate over stable's
    incident: bool = False


class Period(NamedTuple):
    canary_requests: int
    canary_failures: int
    stable_requests: int
    stable_failures: int


# ---- traffic -------------------------------------------------------------------------------------------


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw: multiplication for small means, Hörmann's PTRS (as numpy does) for large ones."""
    if mean < 10:
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return k
    slam, loglam = math.sqrt(mean), math.log(mean)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= vr:
            return k
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b) <= -mean + k * loglam - math.lgamma(k + 1):
            return k


def traffic(rng: random.Random, *, weight: float, rps: float, scenario: Scenario, periods: int) -> list[Period]:
    canary, stable = rps * PERIOD * weight, rps * PERIOD * (1 - weight)
    out: list[Period] = []
    for k in range(periods):
        factor = INCIDENT_FACTOR if scenario.incident and INCIDENT[0] <= k < INCIDENT[1] else 1.0
        p_c, p_s = STABLE_RATE * scenario.multiplier * factor, STABLE_RATE * factor
        x_c, x_s = poisson(rng, canary * p_c), poisson(rng, stable * p_s)
        out.append(Period(x_c + poisson(rng, canary * (1 - p_c)), x_c, x_s + poisson(rng, stable * (1 - p_s)), x_s))
    return out


# ---- judges: each gives (look index, score) pairs; it rolls back at the first score above its threshold --


Scores = list[tuple[int, float]]


def alarm_scores(periods: Sequence[Period], *, evaluations: int) -> Scores:
    sums = [p.canary_failures + p.stable_failures for p in periods]
    return [(k, float(min(sums[k - evaluations + 1 : k + 1]))) for k in range(evaluations - 1, len(sums))]


def threshold_scores(periods: Sequence[Period], *, consecutive: int) -> Scores:
    rates = [p.canary_failures / p.canary_requests if p.canary_requests else -math.inf for p in periods]
    return [(k, min(rates[k - consecutive + 1 : k + 1])) for k in range(consecutive - 1, len(rates))]


def mann_whitney_z(canary: Sequence[float], stable: Sequence[float]) -> float:
    """One-sided z of "canary higher", normal approximation with the tie correction."""
    n1, n2 = len(canary), len(stable)
    ordered = sorted([(v, 0) for v in canary] + [(v, 1) for v in stable])
    n = n1 + n2
    rank_sum, ties, i = 0.0, 0.0, 0
    while i < n:
        j = i
        while j < n and ordered[j][0] == ordered[i][0]:
            j += 1
        rank = (i + j + 1) / 2  # mean of the 1-based ranks i+1 .. j
        rank_sum += rank * sum(1 for _, who in ordered[i:j] if who == 0)
        ties += (j - i) ** 3 - (j - i)
        i = j
    u = rank_sum - n1 * (n1 + 1) / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    return (u - n1 * n2 / 2) / math.sqrt(variance) if variance > 0 else 0.0


def mann_whitney_scores(periods: Sequence[Period]) -> Scores:
    out: Scores = []
    for end in range(MW_WINDOW - 1, len(periods), MW_WINDOW):
        window = periods[end - MW_WINDOW + 1 : end + 1]
        canary = [p.canary_failures / p.canary_requests for p in window if p.canary_requests]
        stable = [p.stable_failures / p.stable_requests for p in window if p.stable_requests]
        if not canary or not stable:
            out.append((end, -math.inf))  # no data: no verdict
            continue
        mean_c, mean_s = statistics.fmean(canary), statistics.fmean(stable)
        effect = mean_c / mean_s if mean_s else (math.inf if mean_c else 1.0)
        worse = effect > 1 + SETTINGS.max_increase
        out.append((end, mann_whitney_z(canary, stable) if worse else -math.inf))
    return out


BASELINE_SCORES: dict[str, Callable[[Sequence[Period]], Scores]] = {
    "alarm 1of1": lambda p: alarm_scores(p, evaluations=1),
    "alarm 2of2": lambda p: alarm_scores(p, evaluations=2),
    "threshold x1": lambda p: threshold_scores(p, consecutive=1),
    "threshold x3": lambda p: threshold_scores(p, consecutive=3),
    "Mann-Whitney": mann_whitney_scores,
}


def sequential(periods: Sequence[Period], settings: SequentialSettings) -> tuple[int | None, int | None]:
    """Looks at which the judge first concludes a regression and, before any, no regression."""
    state = SequentialState("errors")
    regression = promotion = None
    for k, p in enumerate(periods):
        look = Look(
            start=k * PERIOD,
            end=(k + 1) * PERIOD,
            canary_requests=p.canary_requests,
            canary_failures=p.canary_failures,
            stable_requests=p.stable_requests,
            stable_failures=p.stable_failures,
        )
        state = fold(state, look, settings=settings)
        conclusion = verdict(state, settings=settings, since=0.0).conclusion
        if conclusion is Conclusion.REGRESSION:
            regression = k
            break
        if conclusion is Conclusion.NO_REGRESSION and promotion is None:
            promotion = k
    return regression, promotion


# ---- one cell: null runs, calibration, regressions ---------------------------------------------------------


@dataclass(frozen=True)
class Options:
    null_runs: int
    runs: int
    delay: float
    calibrate: str  # "ours": no more false rollbacks than the sequential judge; "bound": at most 1 - confidence
    seed: int = 20240815


@dataclass
class Outcome:
    """Per judge: the rollback time of each run (inf: none within the pause) and its blast radius."""

    times: dict[str, list[float]] = field(default_factory=lambda: {j: [] for j in JUDGES})
    blast: dict[str, list[float]] = field(default_factory=lambda: {j: [] for j in JUDGES})
    promotions: list[float] = field(default_factory=list)  # sequential, maxIncrease 0.2
    wide_promotions: list[float] = field(default_factory=list)  # sequential, maxIncrease 1.0


@dataclass
class CellResult:
    weight: float
    rps: float
    thresholds: dict[str, float]  # each baseline's, as calibrated on the cell's null runs
    outcomes: dict[Scenario, Outcome]


def decided_at(k: int | None, delay: float) -> float:
    return math.inf if k is None else (k + 1) * PERIOD + delay


def blast_radius(periods: Sequence[Period], until: float) -> float:
    """Canary failures served before ``until`` (the pause's end if never rolled back), uniform in a period."""
    until = min(until, PAUSE)
    return sum(p.canary_failures * min(1.0, max(0.0, (until - k * PERIOD) / PERIOD)) for k, p in enumerate(periods))


def first_above(scores: Scores, threshold: float) -> int | None:
    return next((k for k, s in scores if s > threshold), None)


def calibrate(null_maxima: list[float], allowed: int) -> float:
    """The lowest threshold with at most ``allowed`` null runs strictly above it."""
    ordered = sorted(null_maxima, reverse=True)
    return ordered[min(allowed, len(ordered) - 1)]


def run_cell(weight: float, rps: float, options: Options) -> CellResult:
    total = int(PAUSE // PERIOD)  # traffic through the whole pause, for the blast radius
    judged = int((PAUSE - options.delay) // PERIOD)  # periods published before the pause ends
    cell_seed = options.seed + int(weight * 1000) * 1000 + int(rps)

    def runs(scenario: Scenario, count: int) -> list[list[Period]]:
        base = (cell_seed * 1000 + int(scenario.multiplier * 10) * 2 + scenario.incident) * 1_000_000
        return [
            traffic(random.Random(base + i), weight=weight, rps=rps, scenario=scenario, periods=total)
            for i in range(count)
        ]

    # The null runs first: the sequential judge's false rollbacks set every baseline's threshold.
    null = runs(Scenario(1.0), options.null_runs)
    null_sequential = [sequential(periods[:judged], SETTINGS) for periods in null]
    false_rollbacks = sum(regression is not None for regression, _ in null_sequential)
    if options.calibrate == "bound":
        false_rollbacks = math.floor((1 - SETTINGS.confidence) * options.null_runs + 1e-9)
    null_scores = {name: [score(periods[:judged]) for periods in null] for name, score in BASELINE_SCORES.items()}
    thresholds = {
        name: calibrate([max((s for _, s in scores), default=-math.inf) for scores in per_run], false_rollbacks)
        for name, per_run in null_scores.items()
    }

    outcomes: dict[Scenario, Outcome] = {}
    for scenario in (*(Scenario(m) for m in MULTIPLIERS), Scenario(BOUNDARY), Scenario(1.0, incident=True)):
        is_null = scenario == Scenario(1.0)
        simulated = null if is_null else runs(scenario, options.runs)
        outcome = Outcome()
        for i, periods in enumerate(simulated):
            looks = periods[:judged]
            ks = {
                name: first_above(null_scores[name][i] if is_null else score(looks), thresholds[name])
                for name, score in BASELINE_SCORES.items()
            }
            regression, promotion = null_sequential[i] if is_null else sequential(looks, SETTINGS)
            ks["sequential"] = regression
            outcome.promotions.append(min(PAUSE, decided_at(promotion, options.delay)))
            if is_null:
                _, wide = sequential(looks, WIDE)
                outcome.wide_promotions.append(min(PAUSE, decided_at(wide, options.delay)))
            for name, k in ks.items():
                at = decided_at(k, options.delay)
                outcome.times[name].append(at)
                outcome.blast[name].append(blast_radius(periods, at))
        outcomes[scenario] = outcome
    return CellResult(weight=weight, rps=rps, thresholds=thresholds, outcomes=outcomes)


# ---- the tables --------------------------------------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def minutes(seconds: float) -> str:
    return "-" if math.isinf(seconds) else f"{seconds / 60:.1f}"


def percent(part: float, digits: int = 0) -> str:
    return f"{100 * part:.{digits}f}%"


def rate(times: Sequence[float]) -> float:
    return sum(t < math.inf for t in times) / len(times)


def early(promotions: Sequence[float]) -> float:
    return sum(t < PAUSE for t in promotions) / len(promotions)


def cell_label(result: CellResult) -> str:
    return f"| {result.weight:.0%} | {result.rps:g} |"


def null_table(results: Sequence[CellResult], options: Options) -> list[str]:
    lines = [
        f"Rollbacks of a good canary: the false-rollback rate over {options.null_runs} null runs per cell (canary"
        f" = stable) / the share rolled back at x{BOUNDARY:g} (within maxIncrease) / with a downstream incident"
        f" (canary = stable, both failing {INCIDENT_FACTOR:g}x as often from minute {INCIDENT[0]} to"
        f" {INCIDENT[1]}), {options.runs} runs each; and"
        " promoteEarly: median time to promote a good canary (30 min = the nominal pause), with the share"
        " promoted early",
        "",
        "| weight | req/s | " + " | ".join(JUDGES) + " | promote, maxIncrease 0.2 | promote, maxIncrease 1.0 |",
        "| ---: | ---: |" + " ---: |" * (len(JUDGES) + 2),
    ]
    for result in results:
        null, boundary = result.outcomes[Scenario(1.0)], result.outcomes[Scenario(BOUNDARY)]
        incident = result.outcomes[Scenario(1.0, incident=True)]
        frr = " | ".join(
            f"{percent(rate(null.times[j]), 2)} / {percent(rate(boundary.times[j]))}"
            f" / {percent(rate(incident.times[j]))}"
            for j in JUDGES
        )
        promote = " | ".join(
            f"{minutes(statistics.median(times))} min ({percent(early(times))})"
            for times in (null.promotions, null.wide_promotions)
        )
        lines.append(f"{cell_label(result)} {frr} | {promote} |")
    return lines


def rollback_table(results: Sequence[CellResult], options: Options) -> list[str]:
    lines = [
        f"Time to rollback in minutes from the canary's first request, median / p95 (share rolled back within"
        f" the pause), {options.runs} runs per row; - = not within the 30-minute pause",
        "",
        "| weight | req/s | canary | " + " | ".join(JUDGES) + " | sequential: promoted early |",
        "| ---: | ---: | ---: |" + " ---: |" * (len(JUDGES) + 1),
    ]
    for result in results:
        for multiplier in MULTIPLIERS[1:]:
            outcome = result.outcomes[Scenario(multiplier)]
            cells = []
            for judge in JUDGES:
                times = outcome.times[judge]
                cells.append(
                    f"{minutes(statistics.median(times))} / {minutes(quantile(times, 0.95))} ({percent(rate(times))})"
                )
            promoted = percent(early(outcome.promotions))
            lines.append(f"{cell_label(result)} x{multiplier:g} | " + " | ".join(cells) + f" | {promoted} |")
    return lines


def blast_table(results: Sequence[CellResult], options: Options) -> list[str]:
    lines = [
        "Blast radius: failed requests served by the canary before the rollback (until the pause's end when"
        " not rolled back), median / p95",
        "",
        "| weight | req/s | canary | " + " | ".join(JUDGES) + " |",
        "| ---: | ---: | ---: |" + " ---: |" * len(JUDGES),
    ]
    for result in results:
        for multiplier in MULTIPLIERS[1:]:
            blast = result.outcomes[Scenario(multiplier)].blast
            cells = [f"{statistics.median(blast[j]):.0f} / {quantile(blast[j], 0.95):.0f}" for j in JUDGES]
            lines.append(f"{cell_label(result)} x{multiplier:g} | " + " | ".join(cells) + " |")
    return lines


def threshold_table(results: Sequence[CellResult]) -> list[str]:
    # What each score is: the alias's errors per period, the canary's error rate, a z statistic.
    units = {"alarm": ("Errors > ", 1.0, ""), "threshold": ("rate > ", 100.0, "%"), "Mann-Whitney": ("z > ", 1.0, "")}
    lines = [
        "The baselines' calibrated thresholds",
        "",
        "| weight | req/s | " + " | ".join(BASELINES) + " |",
        "| ---: | ---: |" + " ---: |" * len(BASELINES),
    ]
    for result in results:
        cells = []
        for judge in BASELINES:
            prefix, scale, suffix = units[judge.split()[0]]
            cells.append(f"{prefix}{result.thresholds[judge] * scale:.3g}{suffix}")
        lines.append(f"{cell_label(result)} " + " | ".join(cells) + " |")
    return lines


def goal_lines(results: Sequence[CellResult]) -> list[str]:
    lines = ["Goal: x5 at 10 req/s, the alarms' median time to rollback over the sequential judge's (>= 3x):", ""]
    for result in results:
        if result.rps != 10.0:
            continue
        times = result.outcomes[Scenario(5.0)].times
        ours = statistics.median(times["sequential"])
        parts = []
        for alarm in ("alarm 1of1", "alarm 2of2"):
            theirs = statistics.median(times[alarm])
            if math.isinf(theirs):
                parts.append(f"{alarm} not within the pause")
            else:
                parts.append(f"{alarm} {minutes(theirs)} min ({theirs / ours:.1f}x)")
        lines.append(f"- weight {result.weight:.0%}: sequential {minutes(ours)} min; " + "; ".join(parts))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 null runs and 50 runs per regression")
    parser.add_argument("--null-runs", type=int, default=None, help="null runs per cell (default 5000)")
    parser.add_argument("--runs", type=int, default=None, help="runs per other scenario and cell (default 1000)")
    parser.add_argument("--delay", type=float, default=90.0, help="CloudWatch publication delay, seconds")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--calibrate",
        choices=("ours", "bound"),
        default="ours",
        help="baselines' false rollbacks: no more than the sequential judge's (default) or than 1 - confidence",
    )
    args = parser.parse_args(argv)
    options = Options(
        null_runs=args.null_runs or (200 if args.quick else 5000),
        runs=args.runs or (50 if args.quick else 1000),
        delay=args.delay,
        calibrate=args.calibrate,
    )
    started, load_before = time.perf_counter(), os.getloadavg()
    cells = [(w, rps) for w in WEIGHTS for rps in TRAFFIC]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(run_cell, *zip(*cells, strict=True), [options] * len(cells)))
    elapsed = time.perf_counter() - started
    print(
        f"Detection benchmark: period {PERIOD:.0f} s, publication delay {options.delay:.0f} s, pause"
        f" {PAUSE / 60:.0f} min, stable failure rate {STABLE_RATE:.0%}, sequential maxIncrease"
        f" {SETTINGS.max_increase} confidence {SETTINGS.confidence}, Mann-Whitney windows of {MW_WINDOW} periods,"
        f" baselines calibrated to {'the sequential judge' if options.calibrate == 'ours' else 'the bound'}"
    )
    print()
    tables = (
        null_table(results, options),
        rollback_table(results, options),
        blast_table(results, options),
        threshold_table(results),
    )
    for table in tables:
        print("\n".join(table))
        print()
    print("\n".join(goal_lines(results)))
    print()
    load_after = os.getloadavg()
    workers_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"Ran in {elapsed:.0f} s ({workers_cpu.ru_utime + workers_cpu.ru_stime:.0f} s of CPU) on {args.workers}"
        f" worker(s), {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; load average {load_before[0]:.2f}"
        f" before, {load_after[0]:.2f} after."
    )


if __name__ == "__main__":
    main()
