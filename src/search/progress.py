"""Progress lines: one per trial start and end, with time taken, time left and the best so far."""

from __future__ import annotations

import logging
import time

import keras_tuner
from keras_tuner.engine.trial import Trial

from src.budget import RunBudget
from src.search.observers import TrialObserver
from src.search.results import format_values, trial_status

log = logging.getLogger(__name__)


class ProgressReporter(TrialObserver):
    """One log line per trial start and end: k of N, values, time taken and left, best so far."""

    def __init__(self, budget: RunBudget | None = None) -> None:
        self.budget = budget
        self.search_start = 0.0
        self.trial_start = 0.0
        self.durations: list[float] = []

    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        self.search_start = time.perf_counter()

    def _position(self, tuner: keras_tuner.Tuner) -> str:
        created = _trials_created(tuner)
        if created is None:  # a distributed worker sees only its own trials
            return f"{len(self.durations) + 1} of this worker"
        total = tuner.oracle.max_trials
        return f"{created}/{total}" if total else str(created)

    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        self.trial_start = time.perf_counter()
        log.info(
            "trial %s (id %s) started: %s",
            self._position(tuner),
            trial.trial_id,
            format_values(trial.hyperparameters.values),
        )

    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        now = time.perf_counter()
        position = self._position(tuner)
        self.durations.append(now - self.trial_start)
        trial = tuner.oracle.get_trial(trial.trial_id)
        objective = tuner.oracle.objective.name
        outcome = f"{objective}={trial.score:.4f}" if trial.score is not None else "no score"
        best_trials = tuner.oracle.get_best_trials(1)
        best = (
            f"best {best_trials[0].score:.4f} (id {best_trials[0].trial_id})"
            if best_trials and best_trials[0].score is not None
            else "no best yet"
        )
        left = ""
        created = _trials_created(tuner)
        if self.budget is not None:
            budget = self.budget
            left = (
                f" | budget {format_duration(budget.spent())} of "
                f"{format_duration(budget.total_s)} spent, {format_duration(max(budget.left(), 0))}"
                f" left ({format_duration(budget.final_kept_s())} kept for the final stage)"
            )
        elif tuner.oracle.max_trials and created is not None:
            remaining = max(tuner.oracle.max_trials - created, 0)
            mean = sum(self.durations) / len(self.durations)
            left = f", ~{format_duration(remaining * mean)} left"
        log.info(
            "trial %s (id %s) %s in %s: %s | %s | elapsed %s%s",
            position,
            trial.trial_id,
            trial_status(trial),
            format_duration(self.durations[-1]),
            outcome,
            best,
            format_duration(now - self.search_start),
            left,
        )


def _trials_created(tuner: keras_tuner.Tuner) -> int | None:
    """How many trials the oracle has created; None on a worker, whose oracle is remote."""
    trials = getattr(tuner.oracle, "trials", None)  # Keras Tuner's OracleClient has none
    return None if trials is None else len(trials)


def format_duration(seconds: float) -> str:
    """``1m05s`` or ``42s``."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
