"""What a search produced: every trial, the best one, and how to show them.

`summarize` reads a tuner's oracle into plain records (`SearchResult`), which the run log,
``results.json``, the MLflow tracker and the final stage take as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import TrialStatus


@dataclass
class TrialSummary:
    """One trial as the oracle saw it."""

    trial_id: str
    status: str
    score: float | None
    best_step: int | None
    hyperparameters: dict[str, Any]
    error: str | None = None


@dataclass
class SearchResult:
    """The outcome of a search: every trial, the best one, and how long it took."""

    trials: list[TrialSummary]
    objective: str
    wall_time_s: float
    best_trial_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stopped_early: str | None = None

    @property
    def completed(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.status == TrialStatus.COMPLETED]

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
            "best": asdict(best) if best else None,
            "trials": [asdict(t) for t in self.trials],
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
    if record.get("best"):  # results.json
        best = record["best"]
        trial = TrialSummary(**{k: best.get(k) for k in TrialSummary.__dataclass_fields__})
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


def summarize(tuner: keras_tuner.Tuner, wall_time_s: float, data: dict[str, Any]) -> SearchResult:
    """Collect every trial of a tuner's oracle into a `SearchResult`."""
    trials = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        error = error_line(trial.message) if trial.status != TrialStatus.COMPLETED else None
        trials.append(
            TrialSummary(
                trial_id=trial_id,
                status=trial.status,
                score=trial.score,
                best_step=trial.best_step,
                hyperparameters=dict(trial.hyperparameters.values),
                error=error,
            )
        )
    best_trials = tuner.oracle.get_best_trials(1)
    return SearchResult(
        trials=trials,
        objective=tuner.oracle.objective.name,
        wall_time_s=wall_time_s,
        best_trial_id=best_trials[0].trial_id if best_trials else None,
        data=data,
    )


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
    """A compact table: trial id, status, score, best epoch and hyperparameters."""
    rows = [f"{'trial':>5}  {'status':<9}  {result.objective:>12}  {'epoch':>5}  hyperparameters"]
    for trial in result.trials:
        score = "-" if trial.score is None else f"{trial.score:.4f}"
        epoch = "-" if trial.best_step is None else str(trial.best_step + 1)
        detail = format_values(trial.hyperparameters)
        if trial.error:
            detail += f"  [{trial.error}]"
        rows.append(f"{trial.trial_id:>5}  {trial.status:<9}  {score:>12}  {epoch:>5}  {detail}")
    return "\n".join(rows)
