"""Small, dependency-free statistics for benchmark reports (deterministic and seedable).

Accuracy differences are compared *paired* (same items under two strategies): a paired bootstrap
confidence interval for the difference and an exact McNemar test on the discordant pairs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PairedComparison", "median", "paired_compare", "percentile", "wilson_interval"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) like numpy's default; None if empty."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50.0)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial test p-value for k successes in n trials at p = 0.5."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail: float = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of ``strategy`` minus the baseline's, on the items both answered."""

    n: int
    baseline_acc: float
    strategy_acc: float
    diff: float
    ci_low: float
    ci_high: float
    #: Items only the strategy got right / only the baseline got right.
    wins: int
    losses: int
    mcnemar_p: float
    confidence: float = 0.95

    def describe(self) -> str:
        pct = f"{self.confidence:.0%}"
        return (
            f"{self.diff:+.1%} (paired bootstrap {pct} CI {self.ci_low:+.1%} … "
            f"{self.ci_high:+.1%}; "
            f"{self.wins} wins / {self.losses} losses, exact McNemar p = {self.mcnemar_p:.3g}; n = "
            f"{self.n})"
        )


def paired_compare(
    baseline: Sequence[bool],
    strategy: Sequence[bool],
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap CI of ``mean(strategy) - mean(baseline)`` plus an exact McNemar test.

    ``baseline[i]`` and ``strategy[i]`` are the grades of the same item. Deterministic for a
    given ``seed``.
    """
    if len(baseline) != len(strategy):
        raise ValueError("paired samples must have the same length")
    n = len(baseline)
    if n == 0:
        return PairedComparison(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, 1.0, confidence)
    deltas = [int(s) - int(b) for b, s in zip(baseline, strategy)]
    diff = sum(deltas) / n
    rng = random.Random(seed)
    boots = sorted(sum(deltas[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    alpha = (1 - confidence) / 2
    lo = percentile(boots, 100 * alpha)
    hi = percentile(boots, 100 * (1 - alpha))
    wins = sum(1 for d in deltas if d > 0)
    losses = sum(1 for d in deltas if d < 0)
    return PairedComparison(
        n=n,
        baseline_acc=sum(map(int, baseline)) / n,
        strategy_acc=sum(map(int, strategy)) / n,
        diff=diff,
        ci_low=lo if lo is not None else diff,
        ci_high=hi if hi is not None else diff,
        wins=wins,
        losses=losses,
        mcnemar_p=_binom_two_sided(wins, wins + losses),
        confidence=confidence,
    )
