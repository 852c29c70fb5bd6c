"""What a search produced: every trial, the best one, and how to show them.

`summarize` reads a tuner's oracle into plain records (`SearchResult`), which the run log,
``results.json``, the MLflow tracker and the final stage take as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import Trial, TrialStatus

from src.search.warm_start import is_configuration
from src.stats import Accuracy, accuracy_with_interval, indistinguishable, selection_z

# How a pruned trial is shown (Keras Tuner stores it as STOPPED).
PRUNED = "PRUNED"


@dataclass
class TrialSummary:
    """One trial as the oracle saw it."""

    trial_id: str
    status: str
    score: float | None
    best_step: int | None
    hyperparameters: dict[str, Any]
    error: str | None = None
    # Why a pruner stopped it (src.search.optuna), for a PRUNED trial.
    pruned_reason: str | None = None
    # Epochs reported to the oracle (known where a pruner asked for every epoch).
    epochs_run: int | None = None
    # The score's 95 % Wilson interval on the validation digits (accuracy objectives).
    interval: list[float] | None = None
    # Completed, and not told apart from the best trial by `stats.indistinguishable`.
    tied_with_best: bool = False
    # What its model costs to serve (`src.model.cost.ModelCost.to_dict`); None: not measured.
    cost: dict[str, Any] | None = None


@dataclass
class SearchResult:
    """The outcome of a search: every trial, the best one, and how long it took."""

    trials: list[TrialSummary]
    objective: str
    wall_time_s: float
    best_trial_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None
    # Trials pruned, and the epochs they did not train (against the epoch budget).
    pruning: dict[str, int] | None = None
    # The run's time budget (``budget``): given, spent, why the search stopped.
    budget: dict[str, Any] | None = None
    # How many digits each trial's score was measured on (validation, or cross-validation).
    scored_digits: int | None = None
    # Each hyperparameter's importance (`src.search.importance.Importance.to_dict`).
    importance: dict[str, Any] | None = None
    # Score against latency: the completed trials no other beats on both (`src.search.tradeoffs`).
    pareto_front: list[dict[str, Any]] | None = None

    @property
    def completed(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == TrialStatus.COMPLETED]

    @property
    def scored(self) -> list[TrialSummary]:
        """The completed trials with a score."""
        return [t for t in self.completed if t.score is not None]

    @property
    def trials_tied_with_best(self) -> list[TrialSummary]:
        """The completed trials that cannot be told apart from the best, the best included."""
        return [t for t in self.completed if t.tied_with_best or t.trial_id == self.best_trial_id]

    @property
    def best(self) -> TrialSummary | None:
        """The best trial, as the oracle ranks them."""
        return next((t for t in self.trials if t.trial_id == self.best_trial_id), None)

    def write(self, folder: Path) -> Path:
        """Write ``results.json`` into ``folder``; returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "results.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "objective": self.objective,
            "wall_time_s": round(self.wall_time_s, 2),
            "data": self.data,
            "stopped_early": self.stopped_early,
            "pruning": self.pruning,
            "budget": self.budget,
            "best": asdict(best) if best else None,
            "trials": [asdict(t) for t in self.trials],
            "importance": self.importance,
            "pareto_front": self.pareto_front,
        }


def recorded_search(path: Path) -> SearchResult:
    """A finished search's chosen configuration, read back to be retrained.

    Args:
        path: A ``results.json`` (its best trial) or a final stage's ``final.json`` (its
            hyperparameters and epoch count).

    Raises:
        ValueError: the file holds no configuration.
    """
    record = json.loads(Path(path).read_text())
    if not record.get("best") and record.get("trials"):  # the shipped study: its best trial
        sign = -1.0 if "loss" in str(record.get("objective")) else 1.0
        scored = [t for t in record["trials"] if t.get("score") is not None]
        record["best"] = max(scored, key=lambda t: sign * t["score"], default=None)
    if record.get("best"):  # results.json
        best = record["best"]
        trial = TrialSummary(**{k: best[k] for k in TrialSummary.__dataclass_fields__ if k in best})
    elif "hyperparameters" in record and "epochs" in record:  # final.json
        trial = TrialSummary(
            "recorded",
            TrialStatus.COMPLETED,
            None,
            record["epochs"] - 1,
            record["hyperparameters"],
        )
    else:
        raise ValueError(f"{path}: neither a results.json with a best trial nor a final.json")
    return SearchResult(
        trials=[trial],
        objective=record.get("objective", "recorded"),
        wall_time_s=0.0,
        best_trial_id=trial.trial_id,
        data={"recorded_from": str(path)},
    )


def summarize(
    tuner: keras_tuner.Tuner,
    wall_time_s: float,
    data: dict[str, Any],
    epochs_budget: int | None = None,
    scored_digits: int | None = None,
) -> SearchResult:
    """Collect every trial of a tuner's oracle into a `SearchResult`.

    Args:
        tuner: The tuner after its search.
        wall_time_s: How long the search took.
        data: The dataset's description (`Dataset.describe`); its validation size gives
            each accuracy its interval.
        epochs_budget: The epochs a trial trains at most, to count what pruning saved.
        scored_digits: How many digits a score is measured on, where not the validation
            split (cross-validation: the training and validation digits).
    """
    objective = tuner.oracle.objective.name
    reports_epochs = getattr(tuner, "reports_epochs", False)
    validation_digits = scored_digits or data.get("sizes", {}).get("val")
    costs = getattr(tuner, "trial_costs", {})
    trials = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        status = trial_status(trial)
        error = error_line(trial.message) if status not in (TrialStatus.COMPLETED, PRUNED) else None
        accuracy = _accuracy(trial.score, objective, validation_digits)
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                status=status,
                score=trial.score,
                best_step=trial.best_step,
                hyperparameters=dict(trial.hyperparameters.values),
                error=error,
                pruned_reason=trial.message if status == PRUNED else None,
                epochs_run=epochs_run(trial, objective) if reports_epochs else None,
                interval=[accuracy.ci_low, accuracy.ci_high] if accuracy else None,
                cost=costs[trial_id].to_dict() if trial_id in costs else None,
            )
        )
    # Keras Tuner's ranking falls back on unfinished trials when none completed; not here.
    best_trials = [t for t in tuner.oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
    result = SearchResult(
        trials=trials,
        objective=objective,
        wall_time_s=wall_time_s,
        best_trial_id=best_trials[0].trial_id if best_trials else None,
        data=data,
        scored_digits=validation_digits,
    )
    _mark_ties(result, validation_digits)
    pruned = [t for t in trials if t.status == PRUNED]
    if pruned:
        result.pruning = {
            "pruned": len(pruned),
            "epochs_saved": sum(
                epochs_budget - t.epochs_run for t in pruned if epochs_budget and t.epochs_run
            ),
        }
    return result


def trial_status(trial: Trial) -> str:
    """A trial's final status as shown: Keras Tuner's, with STOPPED read as PRUNED.

    Keras Tuner uses STOPPED otherwise only for "the search is over", on trials it never
    stores; a stored trial with that status was stopped by a pruner (`src.search.optuna`).
    """
    return PRUNED if trial.status == TrialStatus.STOPPED else trial.status


def epochs_run(trial: Trial, objective: str) -> int | None:
    """How many epochs a trial trained, where it reported every epoch to its oracle (as it
    does under a pruner); otherwise this is only its best epoch + 1."""
    if not trial.metrics.exists(objective):
        return None
    steps = [observation.step for observation in trial.metrics.get_history(objective)]
    return max(steps) + 1 if steps else None


def _accuracy(score: float | None, objective: str, total: int | None) -> Accuracy | None:
    if score is None or not total or not objective.endswith("accuracy"):
        return None
    return accuracy_with_interval(round(score * total), total)


def _mark_ties(result: SearchResult, validation_digits: int | None) -> None:
    """Mark the completed trials whose score cannot be told apart from the best one's."""
    best = result.best
    best_accuracy = best and _accuracy(best.score, result.objective, validation_digits)
    if best_accuracy is None:
        return
    for trial in result.completed:
        accuracy = _accuracy(trial.score, result.objective, validation_digits)
        trial.tied_with_best = indistinguishable(accuracy, best_accuracy)


def earlier_best_trial(
    scored: Sequence[tuple[str, float, Mapping[str, Any]]],
    best_id: str,
    earlier: Mapping[str, Any] | None,
    objective: str,
    digits: int | None,
) -> str | None:
    """The trial that trained ``earlier`` (the warm start's first configuration, fixed before
    the search) where the search's best does not beat it once the best's selection is
    allowed for; None where no such trial is scored, it is the best, or the best beats it.

    The best of n noisy scores is ahead of its true value by chance, so it is compared with
    the earlier best at `selection_z` (n) standard errors, not 1.96 (`final.choose`'s
    ``warm_start_tied``, docs/usage.md).

    Args:
        scored: (trial id, score, hyperparameters) of every completed, scored trial.
        best_id: The best trial's id.
        earlier: The earlier best's hyperparameters; None: there is no warm start.
        objective: The objective's name (only accuracies are compared).
        digits: How many digits a score was measured on.
    """
    earlier_id = next((i for i, _, values in scored if is_configuration(values, earlier)), None)
    if earlier_id is None or earlier_id == best_id:
        return None
    scores = {trial_id: score for trial_id, score, _ in scored}
    earlier_accuracy = _accuracy(scores[earlier_id], objective, digits)
    best_accuracy = _accuracy(scores.get(best_id), objective, digits)
    if earlier_accuracy is None or best_accuracy is None:
        return None
    z = selection_z(len(scored))
    return earlier_id if indistinguishable(earlier_accuracy, best_accuracy, z) else None


def error_line(message: str | None) -> str | None:
    """The last non-empty line of a trial's message: the exception, without its traceback."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def format_values(values: Mapping[str, Any]) -> str:
    """Hyperparameters on one line, floats to 3 significant digits."""
    return ", ".join(
        f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in values.items()
    )


def format_trials(result: SearchResult) -> str:
    """A compact table: trial id, status, score with its interval, best epoch, hyperparameters.

    ``=`` marks the completed trials that cannot be told apart from the best (``*``).
    """
    rows = [
        f"{'trial':>5}  {'status':<9}  {result.objective:>12}  {'95% interval':<15}  "
        f"{'epoch':>5}  hyperparameters"
    ]
    for trial in result.trials:
        score = "-" if trial.score is None else f"{trial.score:.4f}"
        if trial.trial_id == result.best_trial_id:
            score = f"* {score}"
        elif trial.tied_with_best:
            score = f"= {score}"
        interval = "-" if trial.interval is None else "[{:.4f}, {:.4f}]".format(*trial.interval)
        epoch = "-" if trial.best_step is None else str(trial.best_step + 1)
        detail = format_values(trial.hyperparameters)
        if trial.error or trial.pruned_reason:
            detail += f"  [{trial.error or trial.pruned_reason}]"
        rows.append(
            f"{trial.trial_id:>5}  {trial.status:<9}  {score:>12}  {interval:<15}  {epoch:>5}  "
            f"{detail}"
        )
    if any(t.tied_with_best for t in result.trials if t.trial_id != result.best_trial_id):
        rows.append("* best; = cannot be told apart from it on these validation digits (src.stats)")
    return "\n".join(rows)
