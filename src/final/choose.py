"""Which trial the final stage retrains (``final.choose``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from src.errors import SearchFailed
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters, forward_flops
from src.search.results import SearchResult, TrialSummary, earlier_best_trial
from src.search.warm_start import model_hyperparameters

# ``final.<key>`` limits on a trial's serving cost, and the cost figure each one bounds.
COST_LIMITS = {"max_latency_ms": "latency_ms", "max_params": "params"}


def within_limits(search: SearchResult, limits: Mapping[str, float | None]) -> list[TrialSummary]:
    """The completed, scored trials whose measured cost is within every limit set.

    Raises:
        SearchFailed: none is; the message names the cheapest trial's figure.
    """
    candidates = [t for t in search.scored if t.cost is not None]
    for key, limit in limits.items():
        if limit is None:
            continue
        figure = COST_LIMITS[key]
        within = [t for t in candidates if t.cost[figure] <= limit]
        if not within:
            cheapest = min(candidates, key=lambda t: t.cost[figure], default=None)
            measured = (
                f"the cheapest completed trial, {cheapest.trial_id}, has {figure} "
                f"{cheapest.cost[figure]:g}"
                if cheapest
                else "no completed trial has a measured cost"
            )
            raise SearchFailed(f"final.{key}={limit:g}: no trial within it; {measured}")
        candidates = within
    return candidates


def choose_trial(
    search: SearchResult,
    rule: str,
    hypermodel: CNNHyperModel,
    earlier_best: Mapping[str, Any] | None = None,
    limits: Mapping[str, float | None] | None = None,
) -> tuple[TrialSummary, str]:
    """The trial the final stage retrains under ``final.choose``, and why, in words.

    With a cost limit (``final.max_latency_ms``, ``final.max_params``): the most accurate
    completed trial within every limit set, whatever the rule (`within_limits`).

    ``best``: the search's best trial. ``warm_start_tied``: the trial of ``earlier_best``
    (the warm start's first configuration: the best that earlier searches found) where the
    best does not beat it once chosen from the trials scored (`earlier_best_trial`), else
    the best. ``cheapest_tied``: of the completed trials that cannot be told apart from the
    best (the best itself included), the one whose model needs the fewest forward FLOPs per
    image; the better score breaks equal costs. Among scores that differ by noise, the
    cheaper model trains and serves faster for the same expected accuracy.
    """
    best = search.best
    if limits and any(value is not None for value in limits.values()):
        sign = -1.0 if "loss" in search.objective else 1.0
        chosen = max(within_limits(search, limits), key=lambda t: sign * t.score)
        where = ", ".join(f"final.{k}={v:g}" for k, v in limits.items() if v is not None)
        cost = f"{chosen.cost['latency_ms']:.2f} ms, {chosen.cost['params']:,} parameters"
        return chosen, f"the most accurate trial within {where} ({cost})"
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
