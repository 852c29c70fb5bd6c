"""The tuner's hooks, passed on: `TrialObserver` and the mixin that drives it.

`ObservedTunerMixin` is mixed in before any Keras Tuner class (``src.tuning`` does it for
the configured one) and forwards Keras Tuner's own hooks (search, trial and epoch
begin/end) to `TrialObserver` objects: the progress lines (``src.progress``) and the MLflow
tracker (``src.tracking``). Plain Keras callbacks could not: Keras Tuner deep-copies them
for every execution and never hands them the trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np
from keras_tuner.engine.trial import Trial, TrialStatus
from sklearn.model_selection import StratifiedKFold

from src.distributed import serve_oracle, wait_for_chief
from src.results import SearchResult


class TooManyFailedTrials(RuntimeError):
    """Keras Tuner stopped the search: ``max_consecutive_failed_trials`` failed in a row."""


class TrialObserver:
    """Receives a tuner's hooks. Subclass it and override what you need.

    Every hook gets the tuner, so an observer can read the oracle (trial scores, the best
    trial) without keeping a reference of its own.
    """

    def on_search_begin(self, tuner: keras_tuner.Tuner) -> None:
        """Called once before the first trial."""

    def on_trial_begin(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        """Called when a trial starts, before its model is built."""

    def on_epoch_end(
        self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int, logs: Mapping[str, float]
    ) -> None:
        """Called after every epoch of every execution of a trial."""

    def on_trial_end(self, tuner: keras_tuner.Tuner, trial: Trial) -> None:
        """Called when a trial ends, after the oracle has scored it (or marked it failed)."""

    def on_search_end(self, tuner: keras_tuner.Tuner) -> None:
        """Called once after the last trial."""

    def on_search_result(self, result: SearchResult) -> None:
        """Called once with the search's summary (also when every trial failed)."""


class ObservedTunerMixin:
    """Mixed in before a Keras Tuner class: forwards its hooks to observers.

    With ``reports_epochs`` it reports every epoch to the oracle, which may stop the trial
    (pruning, ``src.optuna_oracle``); with ``cv_folds`` above 1 a trial's score is k-fold
    cross-validation over the training and validation digits (observers see each fold's
    epochs as ``fold<k>/<metric>``). It also starts every trial from the same seed, so a
    trial's score depends on its hyperparameters alone, and fails trials whose loss became
    NaN (Keras Tuner would otherwise score them as COMPLETED at chance-level accuracy).
    """

    def __init__(
        self,
        *args: Any,
        observers: Sequence[TrialObserver] = (),
        trial_seed: int = 0,
        role: str | None = None,
        chief_timeout_s: float = 300,
        reports_epochs: bool = False,
        cv_folds: int = 1,
        **kwargs: Any,
    ) -> None:
        self.observers = list(observers)
        self.trial_seed = trial_seed
        self.reports_epochs = reports_epochs
        self.cv_folds = cv_folds
        self.current_fold: int | None = None
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

    def on_search_begin(self) -> None:
        super().on_search_begin()
        # Keras Tuner's own multi-line display repeats what ProgressReporter says in one
        # line; on the chief, which runs no trial, it is the only news of the workers' trials.
        if self.role != "chief":
            self.oracle.verbose = 0
        for observer in self.observers:
            observer.on_search_begin(self)

    def on_trial_begin(self, trial: Trial) -> None:
        super().on_trial_begin(trial)
        for observer in self.observers:
            observer.on_trial_begin(self, trial)

    def run_trial(self, trial: Trial, *args: Any, **kwargs: Any) -> Any:
        keras.utils.set_random_seed(self.trial_seed)
        if self.cv_folds > 1:
            histories = self._cross_validate(trial, *args, **kwargs)
        else:
            histories = super().run_trial(trial, *args, **kwargs)
        for history in histories if isinstance(histories, list) else [histories]:
            losses = getattr(history, "history", {}).get("loss", [])
            bad_epoch = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
            if bad_epoch is not None:
                raise keras_tuner.errors.FailedTrialError(
                    f"loss became {losses[bad_epoch]} at epoch {bad_epoch}"
                )
        return histories

    def _cross_validate(self, trial: Trial, x: Any, y: Any, **kwargs: Any) -> list[Any]:
        """Train once per fold of the training and validation digits together, each fold
        validated on the digits it left out; Keras Tuner averages the folds' histories into
        the trial's score, as it averages executions."""
        val_x, val_y = kwargs.pop("validation_data")
        images, labels = np.concatenate([x, val_x]), np.concatenate([y, val_y])
        folds = StratifiedKFold(self.cv_folds, shuffle=True, random_state=self.trial_seed)
        histories: list[Any] = []
        try:
            for fold, (train, held_out) in enumerate(folds.split(images, labels)):
                self.current_fold = fold
                keras.utils.set_random_seed(self.trial_seed)  # every fold starts alike
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

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        super().on_epoch_end(trial, model, epoch, logs)
        shown = dict(logs or {})
        if self.current_fold is not None:  # one curve per fold: fold1/val_accuracy, ...
            shown = {f"fold{self.current_fold + 1}/{name}": v for name, v in shown.items()}
        for observer in self.observers:
            observer.on_epoch_end(self, trial, epoch, shown)
        if self.reports_epochs:
            # Keras Tuner tells its oracle a trial's result only when the trial ends; a
            # pruning oracle (src.optuna_oracle) needs every epoch, and answers STOPPED when
            # the trial should end now. In the distributed mode this is a call to the chief.
            metrics = {name: float(value) for name, value in (logs or {}).items()}
            reported = self.oracle.update_trial(trial.trial_id, metrics, step=epoch)
            if reported.status == TrialStatus.STOPPED:
                model.stop_training = True

    def on_trial_end(self, trial: Trial) -> None:
        # The base scores the trial and may raise once too many trials failed in a row;
        # observers must hear of the trial's end either way.
        try:
            super().on_trial_end(trial)
        except RuntimeError as error:
            # Keras Tuner's oracle raises a bare RuntimeError for this one case (in
            # `_check_consecutive_failures`); give it a type of its own here, where it arises.
            raise TooManyFailedTrials(str(error).splitlines()[0]) from error
        finally:
            for observer in self.observers:
                observer.on_trial_end(self, trial)

    def on_search_end(self) -> None:
        super().on_search_end()
        for observer in self.observers:
            observer.on_search_end(self)
