"""Intervals and the paired test, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.stats import accuracy_with_interval, indistinguishable, mcnemar, selection_z


def _wilson(correct: int, total: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out from its formula."""
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("correct", "total"), [(9879, 10000), (994, 1000), (50, 50), (0, 20)])
def test_wilson_interval_matches_its_formula(correct, total):
    accuracy = accuracy_with_interval(correct, total)
    low, high = _wilson(correct, total)
    assert accuracy.ci_low == pytest.approx(low, abs=1e-9)
    assert accuracy.ci_high == pytest.approx(high, abs=1e-9)
    assert accuracy.errors == total - correct and accuracy.value == correct / total


def test_wilson_interval_known_value():
    # 98.79 % on the official test set: [98.56 %, 98.99 %], 121 errors.
    accuracy = accuracy_with_interval(9879, 10000)
    assert (round(100 * accuracy.ci_low, 2), round(100 * accuracy.ci_high, 2)) == (98.56, 98.99)
    assert str(accuracy) == "98.79% [98.56, 98.99] (121 errors in 10000)"


def test_mcnemar_exact_p_value_by_hand():
    # 10 digits only the challenger gets right, 2 only the champion: under "equally good"
    # each of the 12 goes either way with probability 1/2, so
    # p = 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096 = 158 / 4096.
    challenger = np.array([True] * 10 + [False] * 2 + [True] * 50 + [False] * 3)
    champion = np.array([False] * 10 + [True] * 2 + [True] * 50 + [False] * 3)
    result = mcnemar(challenger, champion)
    assert (result.only_challenger_right, result.only_champion_right) == (10, 2)
    assert result.p_value == pytest.approx(158 / 4096)


def test_mcnemar_of_identical_models_is_one_and_shapes_must_agree():
    same = np.array([True, False, True])
    assert mcnemar(same, same).p_value == 1.0
    with pytest.raises(ValueError, match="same digits"):
        mcnemar(same, same[:2])


def test_two_accuracies_are_told_apart_only_beyond_their_noise():
    # 1,000 validation digits each: 99.1 % against 98.5 % is inside the noise (difference
    # 0.6 points, 1.96 standard errors of the difference = 0.96 points), 99.1 against 97.9 not.
    best = accuracy_with_interval(991, 1000)
    assert indistinguishable(accuracy_with_interval(985, 1000), best)
    assert not indistinguishable(accuracy_with_interval(979, 1000), best)
    # By hand: the difference against 1.96 * sqrt(sum of p(1-p)/n).
    threshold = 1.96 * math.sqrt(0.991 * 0.009 / 1000 + 0.979 * 0.021 / 1000)
    assert 0.991 - 0.979 > threshold > 0.991 - 0.985


def test_the_best_of_more_trials_must_clear_more_standard_errors():
    assert selection_z(1) == pytest.approx(1.96, abs=0.005)
    assert selection_z(2) == pytest.approx(2.24, abs=0.005)
    assert selection_z(18) == pytest.approx(2.99, abs=0.005)
    assert selection_z(0) == selection_z(1)
