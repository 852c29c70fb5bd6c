"""Move a new version's aliases: ``challenger`` always, ``champion`` when it beats the holder.

A new version gets the alias ``challenger``; it becomes ``champion`` only if it beats the
current champion on the same test digits (the champion is scored from the digits it got
right when it was registered, tagged ``test_right``, or else re-evaluated by the caller;
versions tested on other digits, another dataset, are never compared), by the rule
``final.promotion`` names: ``better`` (more digits right) or ``significant`` (better, with
an exact McNemar p-value below ``final.alpha``). Everything goes through an `MlflowClient`
bound to the search's store: nothing here changes MLflow's global tracking URI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mlflow import MlflowClient

from src.registry.lock import promotion_lock
from src.registry.versions import (
    CHALLENGER,
    CHAMPION,
    TEST_RIGHT_TAG,
    current_champion,
    decoded_right,
    encoded_right,
)
from src.stats import Accuracy, PairedComparison, accuracy_with_interval, mcnemar


@dataclass
class Promotion:
    """What the registry decided about a new version, and the evidence."""

    model_version: str
    promoted: bool
    decision: str
    champion_version: str | None = None
    champion_accuracy: Accuracy | None = None
    comparison: PairedComparison | None = None


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    challenger: Accuracy,
    challenger_right: np.ndarray,
    test_digest: str,
    champion_right: Callable[[str], np.ndarray | None],
    rule: str = "significant",
    alpha: float = 0.05,
) -> Promotion:
    """Alias ``version`` `CHALLENGER`, and `CHAMPION` if it beats the current champion.

    The two are compared only on the same test digits (the versions' ``test_digest`` tags
    agree), digit by digit: with ``rule="better"`` the challenger must get more digits
    right; with ``rule="significant"`` also with an exact McNemar p-value below ``alpha``.

    Args:
        client: A client of the registry.
        model_name: The registered model.
        version: The new version.
        challenger: The new version's accuracy on the test split.
        challenger_right: Per test digit, whether the new version got it right.
        test_digest: The test split's digest (``Dataset.test_digest``).
        champion_right: Scores a registered version on the same digits (None if it
            cannot take them); called only for a champion without a ``test_right`` tag.
        rule: ``better`` or ``significant``.
        alpha: The significance level of the ``significant`` rule.
    """
    client.set_model_version_tag(model_name, version, "test_digest", test_digest)
    client.set_model_version_tag(model_name, version, "test_accuracy", f"{challenger.value:.6f}")
    recorded = encoded_right(challenger_right)
    if recorded is not None:  # a later challenger is compared with it (`_compare`)
        client.set_model_version_tag(model_name, version, TEST_RIGHT_TAG, recorded)
    with promotion_lock(client, model_name):
        champion = current_champion(client, model_name)
        client.set_registered_model_alias(model_name, CHALLENGER, version)
        if champion is None:
            outcome = Promotion(version, True, f"version {version} is the first {CHAMPION}")
        elif str(champion.version) == version:  # a resumed final stage, promoted last time
            outcome = Promotion(version, True, f"version {version} is already {CHAMPION}")
        else:
            outcome = _compare(
                version,
                challenger,
                challenger_right,
                test_digest,
                champion,
                champion_right,
                rule,
                alpha,
            )
        if outcome.promoted:
            client.set_registered_model_alias(model_name, CHAMPION, version)
    return outcome


def _compare(
    version: str,
    challenger: Accuracy,
    challenger_right: np.ndarray,
    test_digest: str,
    champion: object,
    champion_right: Callable[[str], np.ndarray | None],
    rule: str,
    alpha: float,
) -> Promotion:
    """The decision on a challenger against an existing champion version."""
    champion_version = str(champion.version)
    name = f"{CHAMPION} version {champion_version}"
    if champion.tags.get("test_digest") != test_digest:
        return Promotion(
            version,
            False,
            f"version {version} stays {CHALLENGER}: {name} was tested on other digits "
            "(another dataset); register other data under its own final.model_name",
            champion_version,
        )
    # The digits it got right when it was registered save loading and re-running it; a
    # version registered before the tag existed is scored by the caller.
    right = decoded_right(champion.tags.get(TEST_RIGHT_TAG), len(challenger_right))
    if right is None:
        right = champion_right(champion_version)
    if right is None:
        return Promotion(
            version, False, f"version {version} stays {CHALLENGER}: {name} cannot be scored here"
        )
    held = accuracy_with_interval(int(right.sum()), len(right))
    comparison = mcnemar(challenger_right, right)
    better = challenger.correct > held.correct
    promoted = better and (rule == "better" or comparison.p_value < alpha)
    verb = "replaces" if promoted else "stays behind"
    why = (
        f"{comparison.only_challenger_right} digits only it got right, "
        f"{comparison.only_champion_right} only the {CHAMPION}; McNemar p={comparison.p_value:.3g}"
    )
    if better and not promoted:
        why += f" (not below final.alpha={alpha:g}: the difference may be chance)"
    decision = f"version {version} ({challenger}) {verb} {name} ({held}): {why}"
    return Promotion(version, promoted, decision, champion_version, held, comparison)
