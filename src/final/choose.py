"""Which trial the final stage retrains (``final.choose``)."""

from __future__ import annotations

from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops
from src.search.results import SearchResult, TrialSummary


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
    tied = [t for t in search.completed if t.tied_with_best or t.trial_id == best.trial_id]
    if rule == "best" or len(tied) < 2:
        return best, "the best trial"

    def cost(trial: TrialSummary) -> int:
        values = {k: v for k, v in trial.hyperparameters.items() if not k.startswith("tuner/")}
        return forward_flops(hypermodel.build(fixed_hyperparameters(values)))

    costs = {t.trial_id: cost(t) for t in tied}
    chosen = min(tied, key=lambda t: (costs[t.trial_id], -(t.score or 0.0)))
    reason = (
        f"the cheapest of {len(tied)} trials tied with the best "
        f"({costs[chosen.trial_id] / 1e6:.1f} MFLOP per image against the best trial's "
        f"{costs[best.trial_id] / 1e6:.1f})"
    )
    return chosen, reason
