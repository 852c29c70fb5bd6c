"""What the project adds to a Keras Tuner trial, one mixin per behaviour.

`src.search.tuner_factory` stacks them before the configured Keras Tuner class, each
overriding one of Keras Tuner's own hooks (``search``, ``run_trial``, ``on_epoch_end``)
and calling the next:

- `SpendsBudget`: with ``budget``, trials start only while the search has time left, and
  every epoch's cost refines what the final stage is expected to need (``src.budget``);
- `DistributedSearch`: the chief serves the oracle with the search hooks called; a worker
  waits a bounded time for the chief (``src.search.distributed``);
- `ReportsEpochs`: every epoch goes to the oracle, which may stop the trial (pruning);
- `FailsNonFiniteLoss`: a trial whose loss became NaN fails (Keras Tuner would score it
  COMPLETED at chance-level accuracy);
- `CrossValidates`: with ``cv_folds`` above 1, a trial's score is k-fold cross-validation
  over the training and validation digits;
- `SeedsTrials`: every trial (and fold) starts from the same seed, so a trial's score
  depends on its hyperparameters alone, not on the order of trials.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
from keras_tuner.engine.trial import Trial, TrialStatus
from sklearn.model_selection import StratifiedKFold

from src.budget import RunBudget
from src.search.distributed import serve_oracle, wait_for_chief
from src.search.results import earlier_best_trial


class SpendsBudget:
    """With a `RunBudget`, starts trials only while the search has time left.

    Keras Tuner stops a search when its oracle has ``max_trials`` trials, so once the time
    left is what the final stage needs, the oracle's ``max_trials`` becomes the number of
    trials it has (at least one trial always runs). Every epoch's duration refines the
    budget's cost estimate; the time spent is saved in the run folder after every trial, so
    that a resumed run counts it. On a distributed chief, which runs no trial, a watcher
    thread applies the same rule.
    """

    def __init__(
        self,
        *args: Any,
        budget: RunBudget | None = None,
        examples_per_epoch: float = 0,
        state_folder: Path | None = None,
        earlier_best: Mapping[str, Any] | None = None,
        scored_digits: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.budget = budget
        self.examples_per_epoch = examples_per_epoch
        self.state_folder = state_folder
        # The configuration `final.choose=warm_start_tied` prefers, and the digits a score
        # is measured on: the reserve is priced at what the final stage will retrain.
        self.earlier_best = earlier_best
        self.scored_digits = scored_digits
        self._epoch_started = 0.0
        super().__init__(*args, **kwargs)

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        watcher = None
        if self.budget is not None and getattr(self, "role", None) == "chief":
            done = threading.Event()
            watcher = threading.Thread(target=self._watch, args=(done,), daemon=True)
            watcher.start()
        try:
            super().search(*fit_args, **fit_kwargs)
        finally:
            if watcher is not None:
                done.set()
                watcher.join()

    def _watch(self, done: threading.Event) -> None:
        while not done.wait(1.0):
            self._stop_if_spent()

    def on_epoch_begin(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Any = None
    ) -> None:
        super().on_epoch_begin(trial, model, epoch, logs)
        self._epoch_started = time.monotonic()

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        # Timed before the later hooks (the oracle's report, MLflow's logging), which the
        # final stage, whose epochs this prices, does not run.
        seconds = time.monotonic() - self._epoch_started
        super().on_epoch_end(trial, model, epoch, logs)
        if self.budget is None:
            return
        # An epoch the search's deadline cut short (`StopAtDeadline`) would read as cheap.
        if not (getattr(model, "stop_training", False) and self.budget.search_left() <= 0):
            self.budget.observe_epoch(seconds, self.examples_per_epoch, trial.trial_id)

    def on_trial_end(self, trial: Trial) -> None:
        try:
            super().on_trial_end(trial)
        finally:
            if self.budget is not None:
                if isinstance(self.oracle, keras_tuner.Oracle):  # a worker's is the chief's
                    self.budget.final_trial = self._retrained_now()
                self._stop_if_spent()
                if self.state_folder is not None:
                    self.budget.save(self.state_folder)

    def _retrained_now(self) -> str | None:
        """The trial the final stage would retrain if the search ended now: the best, or the
        warm start's first configuration where ``earlier_best`` is given and the best does
        not beat it (`earlier_best_trial`, as `src.final.choose` decides)."""
        best = [t for t in self.oracle.get_best_trials(1) if t.status == TrialStatus.COMPLETED]
        if not best:
            return None
        scored = [
            (t.trial_id, t.score, t.hyperparameters.values)
            for t in self.oracle.trials.values()
            if t.status == TrialStatus.COMPLETED and t.score is not None
        ]
        objective = self.oracle.objective.name
        earlier = earlier_best_trial(
            scored, best[0].trial_id, self.earlier_best, objective, self.scored_digits
        )
        return earlier or best[0].trial_id

    def _stop_if_spent(self) -> None:
        budget = self.budget
        oracle = self.oracle
        if budget.search_left() > 0 or not isinstance(oracle, keras_tuner.Oracle):
            return
        if not oracle.trials:
            return  # at least one trial runs; the final stage then shrinks to fit
        if budget.search_stopped_because is None:
            budget.search_stopped_because = (
                f"budget: {max(budget.left(), 0):.0f} s left after {len(oracle.trials)} "
                f"trials, {budget.final_kept_s:.0f} s kept for the final stage"
            )
        oracle.max_trials = len(oracle.trials)  # create_trial now answers STOPPED


class DistributedSearch:
    """Keras Tuner's chief/worker mode with the project's search hooks and a bounded wait."""

    def __init__(
        self, *args: Any, role: str | None = None, chief_timeout_s: float = 300, **kwargs: Any
    ) -> None:
        self.role = role
        self.chief_timeout_s = chief_timeout_s
        super().__init__(*args, **kwargs)

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        if self.role == "chief":
            # Keras Tuner's chief serves the oracle and returns without calling the search
            # hooks; call them here so that observers open and close the search (the MLflow
            # parent run) on the chief, before any worker asks for a trial.
            self.save()
            self.on_search_begin()
            serve_oracle(self.oracle)
            self.on_search_end()
            return
        if self.role == "worker":
            wait_for_chief(self.chief_timeout_s)
        super().search(*fit_args, **fit_kwargs)


class ReportsEpochs:
    """With ``reports_epochs``, tells the oracle every epoch and stops the trial it stops."""

    def __init__(self, *args: Any, reports_epochs: bool = False, **kwargs: Any) -> None:
        self.reports_epochs = reports_epochs
        super().__init__(*args, **kwargs)

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        super().on_epoch_end(trial, model, epoch, logs)
        if not self.reports_epochs:
            return
        # Keras Tuner tells its oracle a trial's result only when the trial ends; a pruning
        # oracle (src.search.optuna) needs every epoch, and answers STOPPED when the trial
        # should end now. In the distributed mode this is a call to the chief.
        metrics = {name: float(value) for name, value in (logs or {}).items()}
        reported = self.oracle.update_trial(trial.trial_id, metrics, step=epoch)
        if reported.status == TrialStatus.STOPPED:
            model.stop_training = True


class FailsNonFiniteLoss:
    """Fails a trial whose training loss stopped being a finite number."""

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        histories = super().run_trial(trial, *args, **kwargs)
        for history in histories if isinstance(histories, list) else [histories]:
            losses = getattr(history, "history", {}).get("loss", [])
            bad_epoch = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
            if bad_epoch is not None:
                raise keras_tuner.errors.FailedTrialError(
                    f"loss became {losses[bad_epoch]} at epoch {bad_epoch}"
                )
        return histories


class CrossValidates:
    """With ``cv_folds`` above 1, trains once per fold of the training and validation digits
    together, each fold validated on the digits it left out; Keras Tuner averages the folds'
    histories into the trial's score, as it averages executions."""

    current_fold: int | None = None

    def __init__(self, *args: Any, cv_folds: int = 1, fold_seed: int = 0, **kwargs: Any) -> None:
        self.cv_folds = cv_folds
        self.fold_seed = fold_seed
        super().__init__(*args, **kwargs)

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        if self.cv_folds < 2:
            return super().run_trial(trial, *args, **kwargs)
        x, y = args
        val_x, val_y = kwargs.pop("validation_data")
        images, labels = np.concatenate([x, val_x]), np.concatenate([y, val_y])
        folds = StratifiedKFold(self.cv_folds, shuffle=True, random_state=self.fold_seed)
        histories: list[Any] = []
        try:
            for fold, (train, held_out) in enumerate(folds.split(images, labels)):
                self.current_fold = fold
                result = super().run_trial(
                    trial,
                    images[train],
                    labels[train],
                    validation_data=(images[held_out], labels[held_out]),
                    **kwargs,
                )
                histories.extend(result if isinstance(result, list) else [result])
        finally:
            self.current_fold = None
        return histories


class SeedsTrials:
    """Starts every trial (every fold of one) from ``trial_seed``."""

    def __init__(self, *args: Any, trial_seed: int = 0, **kwargs: Any) -> None:
        self.trial_seed = trial_seed
        super().__init__(*args, **kwargs)

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        keras.utils.set_random_seed(self.trial_seed)
        return super().run_trial(trial, *args, **kwargs)
