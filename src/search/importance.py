"""Which hyperparameters mattered: Optuna's fANOVA over the search's trials, whatever its tuner.

Keras Tuner has no importance analysis and MLflow none either; Optuna's evaluators work on a
study, so the search's trials become one (`optuna.trial.create_trial`, every tuner alike,
TPE's own study included, so that every search is scored the same way). Scores must be
comparable: with successive halving or Hyperband most trials stop early, so the trials are
compared at the deepest epoch that at least `MIN_TRIALS` of them reached (its fidelity is
recorded), on the validation score each had after that epoch (`LearningCurves`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import Trial

from src.search.observers import TrialObserver
from src.search.results import SearchResult

# Fewer trials than this give importances that are noise (issue 41's floor).
MIN_TRIALS = 8
# Keras Tuner's own bookkeeping (Hyperband's brackets), not hyperparameters.
_TUNER_KEYS = "tuner/"


class LearningCurves(TrialObserver):
    """Each trial's objective after every epoch it trained: ``curves[trial_id][epoch]``."""

    def __init__(self, objective: str) -> None:
        self.objective = objective
        self.curves: dict[str, dict[int, float]] = {}

    def on_epoch_end(
        self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int, logs: Mapping[str, float]
    ) -> None:
        if logs and self.objective in logs:
            self.curves.setdefault(trial.trial_id, {})[epoch] = float(logs[self.objective])


@dataclass
class Importance:
    """Each hyperparameter's share of the score's variance (they sum to 1), or why none."""

    values: dict[str, float] = field(default_factory=dict)
    trials: int = 0
    epoch: int | None = None  # the fidelity: scores after this many epochs
    evaluator: str = "fanova"
    why_none: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _fidelity(self) -> str:
        return f"after epoch {self.epoch}" if self.epoch else "on their final scores"

    def format(self, top: int = 5) -> str:
        """A few lines for the terminal: the top knobs, or why there are none."""
        if self.why_none:
            return f"hyperparameter importance: none ({self.why_none})"
        ranked = list(self.values.items())[:top]
        width = max(len(name) for name, _ in ranked)
        lines = [
            f"hyperparameter importance (Optuna's {self.evaluator}, {self.trials} trials "
            f"compared {self._fidelity()}):"
        ]
        lines += [
            f"  {name:<{width}}  {value:.2f}  {'#' * round(20 * value)}" for name, value in ranked
        ]
        return "\n".join(lines)


def comparable_scores(
    curves: Mapping[str, Mapping[int, float]], minimum: int = MIN_TRIALS
) -> tuple[int | None, dict[str, float]]:
    """The deepest epoch (1-based) that at least ``minimum`` trials reached, and each of those
    trials' score after it; (None, {}) when too few trials trained at all."""
    deepest = max((max(curve) + 1 for curve in curves.values() if curve), default=0)
    for epoch in range(deepest, 0, -1):
        scores = {tid: curve[epoch - 1] for tid, curve in curves.items() if epoch - 1 in curve}
        if len(scores) >= minimum:
            return epoch, scores
    return None, {}


def hyperparameter_importance(
    result: SearchResult, curves: Mapping[str, Mapping[int, float]], seed: int = 0
) -> Importance:
    """The importance of each hyperparameter that varied among the compared trials."""
    import optuna

    if curves:
        epoch, scores = comparable_scores(curves)
    else:  # a distributed chief: its workers saw the epochs; compare the final scores
        epoch, scores = None, {t.trial_id: t.score for t in result.scored}
    if len(scores) < MIN_TRIALS:
        trained = sum(1 for curve in curves.values() if curve) if curves else len(scores)
        return Importance(
            why_none=f"{trained} trial(s) trained an epoch; it takes {MIN_TRIALS} or more"
        )
    if len(set(scores.values())) == 1:
        return Importance(trials=len(scores), epoch=epoch, why_none="every trial scored the same")
    params = {t.trial_id: t.hyperparameters for t in result.trials if t.trial_id in scores}
    names = _varied(params.values())
    if not names:
        return Importance(trials=len(scores), epoch=epoch, why_none="no hyperparameter varied")
    distributions = {name: _distribution([p[name] for p in params.values()]) for name in names}
    direction = "minimize" if "loss" in result.objective else "maximize"
    study = optuna.create_study(direction=direction)
    for trial_id, values in params.items():
        study.add_trial(
            optuna.trial.create_trial(
                params={name: values[name] for name in names},
                distributions=distributions,
                value=scores[trial_id],
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    try:
        values = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    except (ValueError, RuntimeError) as error:  # a report, never worth the finished search
        return Importance(trials=len(scores), epoch=epoch, why_none=f"fANOVA failed: {error}")
    importance = Importance(
        values={name: round(float(value), 4) for name, value in values.items()},
        trials=len(scores),
        epoch=epoch,
    )
    return importance


def _varied(trials: Any) -> list[str]:
    """Hyperparameters every compared trial has, with more than one value among them."""
    trials = list(trials)
    shared = set.intersection(*(set(values) for values in trials))
    names = [name for name in sorted(shared) if not name.startswith(_TUNER_KEYS)]
    return [name for name in names if len({repr(t[name]) for t in trials}) > 1]


def _distribution(values: list[Any]) -> Any:
    """The Optuna distribution that holds ``values``: a range for numbers, else categories."""
    import optuna

    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, int) for v in values):
            return optuna.distributions.IntDistribution(min(values), max(values))
        return optuna.distributions.FloatDistribution(float(min(values)), float(max(values)))
    return optuna.distributions.CategoricalDistribution(sorted(set(values), key=repr))


def importance_figure(importance: Mapping[str, Any]) -> Any:
    """A horizontal bar chart of an `Importance.to_dict`, the most important knob on top."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display here, and none needed
    import matplotlib.pyplot as plt

    names, values = zip(*reversed(importance["values"].items()), strict=True)
    figure, axis = plt.subplots(figsize=(6, 0.4 * len(names) + 1.2))
    axis.barh(names, values)
    axis.set_xlabel("share of the validation score's variance (fANOVA)")
    axis.set_title(
        f"Hyperparameter importance: {importance['trials']} trials"
        + (f" after epoch {importance['epoch']}" if importance["epoch"] else "")
    )
    figure.tight_layout()
    return figure
