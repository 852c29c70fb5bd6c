"""Which trial the final stage retrains (``final.choose``)."""

from __future__ import annotations

from collections.abc import Callable

from keras_tuner.engine.trial import TrialStatus

from src.budget import RunBudget
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops
from src.search.budgeting import DEFAULT_TRIAL_ID, default_configuration
from src.search.results import SearchResult, TrialSummary
from src.search.warm_start import model_hyperparameters, score_sign


def choose_trial(
    search: SearchResult, rule: str, hypermodel: CNNHyperModel
) -> tuple[TrialSummary, str]:
    """The trial the final stage retrains under ``final.choose``, and why, in words.

    ``best``: the search's best trial. ``cheapest_tied``: of the completed trials that
    cannot be told apart from the best (``tied_with_best``, the best itself included),
    the one whose model needs the fewest forward FLOPs per image; the better score breaks
    equal costs. Among scores that differ by noise, the cheaper model trains and serves
    faster for the same expected accuracy.
    """
    best = search.best
    if best.trial_id == DEFAULT_TRIAL_ID:  # no search ran, and no warm start named a configuration
        return best, "the search space's default configuration"
    tied = search.trials_tied_with_best
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

# How many times the chosen trial's epochs a tied trial must be paid to be trained in its
# place, where both are paid their scored epochs: on held-out digits the shipped best for
# 30 epochs beat a dearer tied winner for 16 in the same time by 25 digits (p = 0.0015,
# docs/benchmarks.md), while past about 20 epochs more buy little (30 and 45 epochs of one
# model: 62 and 58 errors), so a few more epochs are no reason to leave the best score.
MORE_OF_THE_SCHEDULE = 1.5


def affordable_choice(
    chosen: TrialSummary,
    search: SearchResult,
    hypermodel: CNNHyperModel,
    budget: RunBudget | None,
    examples: int,
    fill_to: int | None = None,
) -> tuple[TrialSummary, str] | None:
    """What the final stage trains in place of ``chosen`` where the time left does not pay
    it the epochs its score was measured at, or pays a tied trial far more of its schedule,
    and why; None where neither holds, or where there is no budget or nothing to compare.

    A score says how good a configuration is after that many epochs, not after fewer. So,
    in this order: the best-scoring trial tied with the best (`tied_with_best`) that the
    time left pays all of its scored epochs, as tied scores promise the same accuracy and
    it trains its whole schedule (a dearer winner on full MNIST was paid 3 of its 4 where
    the shipped best, tied with it, was paid 5); else, where the time pays ``chosen`` under
    `ENOUGH_OF_THE_SCORED_EPOCHS` of them, the search space's default configuration (its
    first choices: here its smallest model), which in the time of two epochs trains for
    more and is better.

    Where the time pays ``chosen`` its scored epochs and the final stage fills the budget
    up to ``fill_to`` epochs (``final.max_epochs``), a tied trial the time pays
    `MORE_OF_THE_SCHEDULE` times as many of them (up to ``fill_to``) is trained instead,
    for the same reason: the same promise, and more of the schedule to keep it.
    """
    if budget is None or chosen.best_step is None or chosen.trial_id == DEFAULT_TRIAL_ID:
        return None
    # The plan's epochs (`COST_MARGIN` over the measured rate), not the count expected, on
    # purpose: on held-out digits the shipped best for 2 of its 4 epochs was 46 digits
    # behind the default point for 6, and for all 4 only 22 ahead of it for 8, so where a
    # machine's speed changes the doubt goes to the smaller model (docs/benchmarks.md).
    affordable = budget.affordable_epochs(examples, chosen.trial_id)
    scored_at = chosen.best_step + 1
    if affordable is None:
        return None
    if affordable >= scored_at:
        return _tied_and_paid_more(search, chosen, budget, examples, fill_to, affordable)
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

    return _best_tied(search, chosen, paid)


def _best_tied(
    search: SearchResult, chosen: TrialSummary, qualifies: Callable[[TrialSummary], bool]
) -> TrialSummary | None:
    """The best-scoring scored trial tied with the best (or the best), other than
    ``chosen``, that ``qualifies``; None where there is none."""
    candidates = [
        t
        for t in search.trials_tied_with_best
        if t.trial_id != chosen.trial_id
        and t.score is not None
        and t.best_step is not None
        and qualifies(t)
    ]
    if not candidates:
        return None
    sign = score_sign(search.objective)
    return max(candidates, key=lambda t: sign * t.score)


def _tied_and_paid_more(
    search: SearchResult,
    chosen: TrialSummary,
    budget: RunBudget,
    examples: int,
    fill_to: int | None,
    affordable: int,
) -> tuple[TrialSummary, str] | None:
    """The best-scoring tied trial (`tied_with_best`, or the best) the time left pays
    `MORE_OF_THE_SCHEDULE` times the epochs it pays ``chosen`` (``affordable``), up to
    ``fill_to``, and its own scored epochs at least. The epochs only qualify a trial: among
    those paid far more, the score still ranks, as a smaller model tied at a trial's few
    epochs need not stay level over a long schedule. With the reason, in words; None where
    there is none."""
    if fill_to is None:
        return None
    chosen_epochs = min(affordable, fill_to)

    def epochs(trial: TrialSummary) -> int:
        return min(budget.affordable_epochs(examples, trial.trial_id) or 0, fill_to)

    def paid_far_more(trial: TrialSummary) -> bool:
        return epochs(trial) >= max(trial.best_step + 1, MORE_OF_THE_SCHEDULE * chosen_epochs)

    paid = _best_tied(search, chosen, paid_far_more)
    if paid is None:
        return None
    reason = (
        f"the best-scoring tied trial the time left pays {MORE_OF_THE_SCHEDULE:g} times the "
        f"epochs of trial {chosen.trial_id}, up to the {fill_to} a budget fills: "
        f"{epochs(paid)} against {chosen_epochs}"
    )
    return paid, reason
