"""What the project adds to a Keras Tuner trial, one mixin per behaviour.

`src.search.tuner_factory` stacks them before the configured Keras Tuner class, each
overriding one of Keras Tuner's own hooks (``search``, ``run_trial``, ``on_epoch_end``)
and calling the next:

- `SpendsBudget`: with ``budget``, trials start only while the budget's rule lets them, and
  every epoch and trial refines its cost estimates (``src.budget``);
- `DistributedSearch`: the chief serves the oracle with the search hooks called; a worker
  waits a bounded time for the chief (``src.search.distributed``);
- `ReportsEpochs`: every epoch goes to the oracle, which may stop the trial (pruning);
- `MeasuresCost`: each trial's model is measured (parameters, FLOPs, latency, throughput);
- `FailsNonFiniteLoss`: a trial whose loss became NaN fails (Keras Tuner would score it
  COMPLETED at chance-level accuracy);
- `CrossValidates`: with ``cv_folds`` above 1, a trial's score is k-fold cross-validation
  over the training and validation digits;
- `SeedsTrials`: every trial (and fold) starts from the same seed, so a trial's score
  depends on its hyperparameters alone, not on the order of trials;
- `ReleasesTrialGraphs`: a finished trial's traced graphs are let go, so that memory stays
  flat over hundreds of trials.
"""

from __future__ import annotations

import math
import statistics
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
from src.model.backend import custom_gradient_names, forget_custom_gradients
from src.model.cost import ModelCost, measure_cost
from src.search.distributed import serve_oracle, wait_for_chief


class SpendsBudget:
    """With a `RunBudget`, starts trials only while its rule says another may start.

    Keras Tuner stops a search when its oracle has ``max_trials`` trials, so once
    `RunBudget.may_start_trial` says no, the oracle's ``max_trials`` becomes the number of
    trials it has. Every epoch's duration, and every trial's time beyond its epochs (its
    fixed cost), refine the budget's estimates; the time spent is saved in the run folder
    after every trial, so that a resumed run counts it. On a distributed chief, which runs
    no trial, a watcher thread applies the same rule.
    """

    def __init__(
        self,
        *args: Any,
        budget: RunBudget | None = None,
        examples_per_epoch: float = 0,
        state_folder: Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.budget = budget
        self.examples_per_epoch = examples_per_epoch
        self.state_folder = state_folder
        self._epoch_started = 0.0
        self._trial_started = 0.0
        self._trial_epochs_s = 0.0
        self._fixed_costs: list[float] = []
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

    def on_trial_begin(self, trial: Trial) -> None:
        self._trial_started = time.monotonic()
        self._trial_epochs_s = 0.0
        super().on_trial_begin(trial)

    def on_epoch_begin(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Any = None
    ) -> None:
        super().on_epoch_begin(trial, model, epoch, logs)
        self._epoch_started = time.monotonic()

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        # Timed before the later hooks (the oracle's report, MLflow's logging), which count
        # as the trial's fixed cost.
        seconds = time.monotonic() - self._epoch_started
        self._trial_epochs_s += seconds if epoch > 0 else 0.0  # the first carries tracing
        super().on_epoch_end(trial, model, epoch, logs)
        if self.budget is None:
            return
        # An epoch the search's deadline cut short (`StopAtDeadline`) would read as cheap.
        if not (getattr(model, "stop_training", False) and self.budget.search_left() <= 0):
            self.budget.observe_epoch(
                seconds, self.examples_per_epoch, trial.trial_id, traced=epoch == 0
            )

    def on_trial_end(self, trial: Trial) -> None:
        try:
            super().on_trial_end(trial)
        finally:
            if self.budget is not None:
                self._observe_fixed_cost(trial)
                self._stop_if_spent()
                if self.state_folder is not None:
                    self.budget.save(self.state_folder)

    def _observe_fixed_cost(self, trial: Trial) -> None:
        """A trial's time beyond its epochs after the first (building, tracing, validation
        set-up, checkpoints, tracking): the median of the trials so far prices the next."""
        epoch_s = self.budget.epoch_s(self.examples_per_epoch)
        if not epoch_s:
            return
        took = time.monotonic() - self._trial_started
        self._fixed_costs.append(max(took - self._trial_epochs_s - epoch_s, 0.0))
        self.budget.trial_fixed_s = statistics.median(self._fixed_costs)

    def _stop_if_spent(self) -> None:
        oracle = self.oracle
        if not isinstance(oracle, keras_tuner.Oracle):  # a worker's oracle is the chief's
            return
        if not self.budget.may_start_trial(len(oracle.trials)):
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


class MeasuresCost:
    """After each trial trains, measures what its model costs (`src.model.cost`): kept in
    ``trial_costs`` for the trial's MLflow run, ``results.json`` and the final stage's
    ``final.max_latency_ms``/``final.max_params``. A trial that failed has none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.trial_costs: dict[str, ModelCost] = {}
        super().__init__(*args, **kwargs)

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        result = super().run_trial(trial, *args, **kwargs)
        model = getattr(self.hypermodel, "last_model", None)
        if model is not None:
            self.trial_costs[trial.trial_id] = measure_cost(model)
            self.hypermodel.last_model = None  # its graphs may go with the trial's
        return result


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


class ReleasesTrialGraphs:
    """After each trial, drops what TensorFlow registered globally for its traced graphs
    (`src.model.backend.forget_custom_gradients`), so that they can be freed."""

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        self._gradients_before = custom_gradient_names()
        super().search(*fit_args, **fit_kwargs)

    def on_trial_end(self, trial: Trial) -> None:
        try:
            super().on_trial_end(trial)
        finally:
            forget_custom_gradients(getattr(self, "_gradients_before", frozenset()))
