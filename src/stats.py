"""Uncertainty of test scores: intervals for one accuracy, a paired test for two models.

Both come from SciPy's exact binomial test: a Wilson score interval for an accuracy
measured on n test digits, and the exact McNemar test for two models scored on the same
digits (only the digits exactly one of them gets right carry information).
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.stats import binomtest


@dataclass(frozen=True)
class Accuracy:
    """An accuracy on ``total`` digits with its 95 % Wilson interval."""

    correct: int
    total: int
    ci_low: float
    ci_high: float

    @property
    def value(self) -> float:
        return self.correct / self.total

    @property
    def errors(self) -> int:
        return self.total - self.correct

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": self.value, "errors": self.errors}

    def __str__(self) -> str:
        return (
            f"{100 * self.value:.2f}% [{100 * self.ci_low:.2f}, {100 * self.ci_high:.2f}] "
            f"({self.errors} errors in {self.total})"
        )


def accuracy_with_interval(correct: int, total: int, confidence: float = 0.95) -> Accuracy:
    """The accuracy ``correct / total`` with its Wilson score interval."""
    if total <= 0 or not 0 <= correct <= total:
        raise ValueError(f"cannot take an accuracy of {correct} right out of {total}")
    interval = binomtest(correct, total).proportion_ci(confidence, method="wilson")
    return Accuracy(correct, total, float(interval.low), float(interval.high))


def indistinguishable(a: Accuracy, b: Accuracy, z: float = 1.96) -> bool:
    """Whether two accuracies differ by less than ``z`` standard errors of their difference.

    Unpaired (two independent proportions): for two models scored on the same digits a
    paired test would be sharper, but a search keeps only each trial's score. So this errs
    towards "cannot tell apart", which is the safe side for choosing among trials.
    """
    variance = a.value * (1 - a.value) / a.total + b.value * (1 - b.value) / b.total
    return abs(a.value - b.value) <= z * variance**0.5


def selection_z(comparisons: int, alpha: float = 0.05) -> float:
    """The z of a two-sided test at ``alpha`` / ``comparisons`` (Bonferroni): what the best
    of ``comparisons`` scores must clear against one fixed beforehand, as the best of many
    noisy scores is ahead of its true value by chance (1.96 for one, 2.99 for 18)."""
    return NormalDist().inv_cdf(1 - alpha / 2 / max(comparisons, 1))


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same digits: the digits only one of them got right, and the
    exact McNemar p-value of the hypothesis that both are equally accurate."""

    only_challenger_right: int
    only_champion_right: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(challenger_right: np.ndarray, champion_right: np.ndarray) -> PairedComparison:
    """The exact (binomial) McNemar test on two models' per-digit correctness.

    Args:
        challenger_right: Booleans, one per test digit: the new model was right.
        champion_right: The same for the current champion, on the same digits in order.
    """
    challenger_right = np.asarray(challenger_right, dtype=bool)
    champion_right = np.asarray(champion_right, dtype=bool)
    if challenger_right.shape != champion_right.shape:
        raise ValueError("the two models were not scored on the same digits")
    only_challenger = int(np.sum(challenger_right & ~champion_right))
    only_champion = int(np.sum(champion_right & ~challenger_right))
    discordant = only_challenger + only_champion
    p_value = 1.0 if discordant == 0 else float(binomtest(only_challenger, discordant).pvalue)
    return PairedComparison(only_challenger, only_champion, p_value)


def packed_bits(right: np.ndarray) -> str:
    """Per-digit correctness (booleans, in test order) as base64 of packed bits: 10,000
    digits in 1,668 characters, enough to recompute intervals and McNemar tests."""
    return base64.b64encode(np.packbits(np.asarray(right, dtype=bool)).tobytes()).decode()


def unpacked_bits(bits: str, count: int) -> np.ndarray:
    """The booleans `packed_bits` wrote, ``count`` of them."""
    raw = np.frombuffer(base64.b64decode(bits), dtype=np.uint8)
    return np.unpackbits(raw)[:count].astype(bool)
