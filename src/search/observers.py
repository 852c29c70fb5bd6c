"""The tuner's hooks, passed on: `TrialObserver` and the mixin that drives it.

`ObservedTunerMixin` is mixed in before any Keras Tuner class (``src.search.tuner_factory``
does it for the configured one) and forwards Keras Tuner's own hooks (search, trial and
epoch begin/end) to `TrialObserver` objects: the progress lines (``src.search.progress``)
and the MLflow tracker (``src.tracking.tracker``). Plain Keras callbacks could not: Keras
Tuner deep-copies them for every execution and never hands them the trial. What the
project adds to a trial (seeds, cross-validation, pruning) is in ``src.search.behaviours``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine.trial import Trial

from src.search.results import SearchResult


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

    def on_epoch_begin(self, tuner: keras_tuner.Tuner, trial: Trial, epoch: int) -> None:
        """Called before every epoch of every execution of a trial."""

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

    def on_recorded_search(self, state_dir: Path) -> None:
        """Called instead of `on_search_begin` where no tuner runs: the final stage retrains
        a configuration recorded elsewhere (``final.from_results``); `on_search_result`
        follows."""


class ObservedTunerMixin:
    """Mixed in before a Keras Tuner class: forwards its hooks to observers, in order.

    A fold of a cross-validated trial (``current_fold``, set by
    ``src.search.behaviours.CrossValidates``) shows its epochs as ``fold<k>/<metric>``.
    """

    current_fold: int | None = None

    def __init__(self, *args: Any, observers: Sequence[TrialObserver] = (), **kwargs: Any) -> None:
        self.observers = list(observers)
        super().__init__(*args, **kwargs)

    def on_search_begin(self) -> None:
        super().on_search_begin()
        # Keras Tuner's own multi-line display repeats what ProgressReporter says in one
        # line; on the chief, which runs no trial, it is the only news of the workers' trials.
        if getattr(self, "role", None) != "chief":
            self.oracle.verbose = 0
        for observer in self.observers:
            observer.on_search_begin(self)

    def on_trial_begin(self, trial: Trial) -> None:
        super().on_trial_begin(trial)
        for observer in self.observers:
            observer.on_trial_begin(self, trial)

    def on_epoch_begin(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        super().on_epoch_begin(trial, model, epoch, logs)
        for observer in self.observers:
            observer.on_epoch_begin(self, trial, epoch)

    def on_epoch_end(
        self, trial: Trial, model: keras.Model, epoch: int, logs: Mapping[str, float] | None = None
    ) -> None:
        super().on_epoch_end(trial, model, epoch, logs)
        shown = dict(logs or {})
        if self.current_fold is not None:  # one curve per fold: fold1/val_accuracy, ...
            shown = {f"fold{self.current_fold + 1}/{name}": v for name, v in shown.items()}
        for observer in self.observers:
            observer.on_epoch_end(self, trial, epoch, shown)

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
