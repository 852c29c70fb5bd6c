"""Which trial the final stage retrains (``final.choose``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_tuner.engine.trial import TrialStatus

from src.budget import RunBudget
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops
from src.search.budgeting import DEFAULT_TRIAL_ID, default_configuration
from src.search.results import SearchResult, TrialSummary, earlier_best_trial
from src.search.warm_start import model_hyperparameters, score_sign


def choose_trial(
    search: SearchResult,
    rule: str,
    hypermodel: CNNHyperModel,
    earlier_best: Mapping[str, Any] | None = None,
) -> tuple[TrialSummary, str]:
    """The trial the final stage retrains under ``final.choose``, and why, in words.

    ``best``: the search's best trial. ``warm_start_tied``: the trial of ``earlier_best``
    (the warm start's first configuration: the best that earlier searches found) where the
    best does not beat it once chosen from the trials scored (`earlier_best_trial`), else
    the best. ``cheapest_tied``: of the completed trials that cannot be told apart from the
    best (the best itself included), the one whose model needs the fewest forward FLOPs per
    image; the better score breaks equal costs. Among scores that differ by noise, the
    cheaper model trains and serves faster for the same expected accuracy.
    """
    best = search.best
    if best.trial_id == DEFAULT_TRIAL_ID:  # no search ran, and no warm start named a configuration
        return best, "the search space's default configuration"
    tied = search.trials_tied_with_best
    if rule == "warm_start_tied":
        scored = [(t.trial_id, t.score, t.hyperparameters) for t in search.scored]
        earlier_id = earlier_best_trial(
            scored, best.trial_id, earlier_best, search.objective, search.scored_digits
        )
        if earlier_id is None:
            return best, "the best trial"
        earlier = next(t for t in search.trials if t.trial_id == earlier_id)
        return earlier, (
            f"the warm start's first configuration (the best earlier searches found): the "
            f"best trial {best.trial_id} does not beat it once chosen from {len(scored)}"
        )
    if rule == "best" or len(tied) < 2:
        return best, "the best trial"

    def cost(trial: TrialSummary) -> int:
        values = model_hyperparameters(trial.hyperparameters)
        return forward_flops(hypermodel.build(fixed_hyperparameters(values)))

    costs = {t.trial_id: cost(t) for t in tied}
    chosen = min(tied, key=lambda t: (costs[t.trial_id], -(t.score or 0.0)))
    reason = (
        f"the cheapest of {len(tied)} trials tied with the best "
        f"({costs[chosen.trial_id] / 1e6:.1f} MFLOP per image against the best trial's "
        f"{costs[best.trial_id] / 1e6:.1f})"
    )
    return chosen, reason


# The share of its scored epochs a configuration must be paid to be trained: measured on
# held-out training digits, the shipped best trained for 2 of its 4 epochs lost to the
# default point trained in the same time (on 10,000 digits and on 50,000), and for 3 of
# them tied it (10,000) or beat it (50,000) (docs/benchmarks.md, "The smallest budgets").
ENOUGH_OF_THE_SCORED_EPOCHS = 0.75


def affordable_choice(
    chosen: TrialSummary,
    search: SearchResult,
    hypermodel: CNNHyperModel,
    budget: RunBudget | None,
    examples: int,
) -> tuple[TrialSummary, str] | None:
    """What the final stage trains in place of ``chosen`` where the time left does not pay
    it the epochs its score was measured at, and why; None where it does, or where there is
    no budget or nothing to compare.

    A score says how good a configuration is after that many epochs, not after fewer. So,
    in this order: the best-scoring trial tied with the best (`tied_with_best`) that the
    time left pays all of its scored epochs, as tied scores promise the same accuracy and
    it trains its whole schedule (a dearer winner on full MNIST was paid 3 of its 4 where
    the shipped best, tied with it, was paid 5); else, where the time pays ``chosen`` under
    `ENOUGH_OF_THE_SCORED_EPOCHS` of them, the search space's default configuration (its
    first choices: here its smallest model), which in the time of two epochs trains for
    more and is better.
    """
    if budget is None or chosen.best_step is None or chosen.trial_id == DEFAULT_TRIAL_ID:
        return None
    # The plan's epochs (`COST_MARGIN` over the measured rate), not the count expected, on
    # purpose: on held-out digits the shipped best for 2 of its 4 epochs was 46 digits
    # behind the default point for 6, and for all 4 only 22 ahead of it for 8, so where a
    # machine's speed changes the doubt goes to the smaller model (docs/benchmarks.md).
    affordable = budget.affordable_epochs(examples, chosen.trial_id)
    scored_at = chosen.best_step + 1
    if affordable is None or affordable >= scored_at:
        return None
    paid = _tied_and_paid(search, chosen, budget, examples)
    if paid is not None:
        return paid, (
            f"the best-scoring trial tied with the best that the time left pays the "
            f"{paid.best_step + 1} epochs its score was measured at (it pays trial "
            f"{chosen.trial_id} {max(affordable, 0)} of {scored_at})"
        )
    if affordable >= ENOUGH_OF_THE_SCORED_EPOCHS * scored_at:
        return None
    values = default_configuration(hypermodel)
    if values == chosen.hyperparameters:
        return None
    fallback = TrialSummary(DEFAULT_TRIAL_ID, TrialStatus.COMPLETED, None, None, values)
    reason = (
        f"the search space's default configuration: the time left pays trial "
        f"{chosen.trial_id} {max(affordable, 0)} of the {scored_at} epochs its score was "
        "measured at"
    )
    return fallback, reason


def _tied_and_paid(
    search: SearchResult, chosen: TrialSummary, budget: RunBudget, examples: int
) -> TrialSummary | None:
    """The best-scoring completed trial other than ``chosen``, tied with the search's best
    (or the best itself), that the time left pays all of its scored epochs at its own
    measured rate; None where there is none."""

    def paid(trial: TrialSummary) -> bool:
        affordable = budget.affordable_epochs(examples, trial.trial_id)
        return affordable is not None and affordable >= trial.best_step + 1

    candidates = [
        t
        for t in search.trials_tied_with_best
        if t.trial_id != chosen.trial_id
        and t.score is not None
        and t.best_step is not None
        and paid(t)
    ]
    if not candidates:
        return None
    sign = score_sign(search.objective)
    return max(candidates, key=lambda t: sign * t.score)
