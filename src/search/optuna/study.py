"""The Optuna study beside a Keras Tuner oracle: epochs reported, trials pruned, outcomes told.

See ``src.search.optuna`` for how the two kinds of trial are linked.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner
import optuna
from keras_tuner.engine.trial import Trial, TrialStatus
from optuna.trial import TrialState

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIAL_ID_ATTR = "keras_tuner_trial_id"
PRUNED_ATTR = "pruned"
STUDY_FILE = "optuna.journal"


class OptunaStudyMixin:
    """Mixed in before a Keras Tuner ``Oracle`` class: an Optuna study that prunes trials.

    ``pruner`` is set by `enable_pruning` (or `OptunaOracle`'s constructor). The study is
    opened on first use, once the tuner has set the oracle's folder (and, with
    ``overwrite``, emptied it). What the oracle must remember across a resume (which Optuna
    trial is which Keras Tuner trial, which trial was pruned and why) is kept in the study
    itself, as user attributes, not in the oracle's state: `enable_pruning` adds this mixin
    after Keras Tuner has already reloaded that state.
    """

    pruner: optuna.pruners.BasePruner | None = None
    # The step of a trial's last scheduled epoch (set by `enable_pruning`): a cut there
    # would save nothing and only drop a finished trial from the ranking.
    last_step: int | None = None
    # True where the study also proposes the values (`OptunaOracle`).
    samples_from_study = False

    @property
    def study(self) -> optuna.Study:
        """The Optuna study of this search, in ``<tuner folder>/optuna.journal``."""
        if self.__dict__.get("_study") is None:
            path = Path(self._project_dir) / STUDY_FILE
            # Optuna's journal storage (an append-only log replayed on load), not its RDB
            # storage on SQLite: that commits every suggested value and reported epoch,
            # which made the oracle 5-6x slower per trial (bench/oracle_cost.py,
            # docs/archive/benchmarks-2026-12-06.md).
            backend = optuna.storages.journal.JournalFileBackend(str(path.resolve()))
            self._study = optuna.create_study(
                storage=optuna.storages.JournalStorage(backend),
                study_name="keras_tuner",
                direction="maximize" if self.objective.direction == "max" else "minimize",
                pruner=self.pruner or optuna.pruners.NopPruner(),
                load_if_exists=True,
            )
        return self._study

    @property
    def _tracks_study(self) -> bool:
        return self.pruner is not None or self.samples_from_study

    # -- the link between the two kinds of trial --------------------------------------------

    @property
    def _running(self) -> dict[str, _RunningTrial]:
        """The study's running trials by Keras Tuner trial id (read from the study once)."""
        if self.__dict__.get("_running_trials") is None:
            self._running_trials = {
                frozen.user_attrs[TRIAL_ID_ATTR]: _RunningTrial.of(self.study, frozen)
                for frozen in self.study.get_trials(
                    deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)
                )
                if frozen.user_attrs.get(TRIAL_ID_ATTR) is not None
            }
        return self._running_trials

    def _open(self, trial: Trial) -> _RunningTrial:
        """The running Optuna trial of a Keras Tuner trial, started if there is none.

        A retried trial (after a failure) gets a new Optuna trial with the same values.
        """
        running = self._running.get(trial.trial_id)
        if running is None:
            if self.samples_from_study:
                self.study.enqueue_trial(dict(trial.hyperparameters.values))
            optuna_trial = self.study.ask()
            if self.samples_from_study:
                self._suggest(optuna_trial)
            running = self._link(optuna_trial, trial.trial_id)
        return running

    def _link(self, optuna_trial: optuna.Trial, trial_id: str) -> _RunningTrial:
        optuna_trial.set_user_attr(TRIAL_ID_ATTR, trial_id)
        running = _RunningTrial(optuna_trial, set())
        self._running[trial_id] = running
        return running

    def _suggest(self, optuna_trial: optuna.Trial) -> dict[str, Any]:
        raise NotImplementedError  # `OptunaOracle`

    # -- Keras Tuner's hooks ----------------------------------------------------------------

    @keras_tuner.synchronized
    def create_trial(self, tuner_id: str) -> Trial:
        trial = super().create_trial(tuner_id)
        if self._tracks_study and trial.status == TrialStatus.RUNNING:
            self._open(trial)
        return trial

    @keras_tuner.synchronized
    def update_trial(self, trial_id: str, metrics: Mapping[str, float], step: int = 0) -> Trial:
        trial = super().update_trial(trial_id, metrics, step)
        value = metrics.get(self.objective.name)
        if self.pruner is None or value is None or trial.status != TrialStatus.RUNNING:
            return trial
        running = self._open(trial)
        # The tuner reports the best epoch again when the trial ends, and a retried trial
        # reports its first epochs again: like Optuna, keep the first value of a step.
        if step in running.reported_steps:
            return trial
        # Optuna's step is the resource spent, epochs trained (Keras Tuner's is the epoch's
        # index), so that a successive-halving rung of min_resource 1 cuts after one epoch.
        running.trial.report(float(value), step + 1)
        running.reported_steps.add(step)
        if step != self.last_step and running.trial.should_prune():
            trial.status = TrialStatus.STOPPED
            trial.message = self._pruning_reason(running.trial, float(value), step)
            running.trial.set_user_attr(PRUNED_ATTR, trial.message)
            self._save_trial(trial)
        return trial

    @keras_tuner.synchronized
    def end_trial(self, trial: Trial) -> None:
        running = self._running.get(trial.trial_id) if self._tracks_study else None
        reason = running and running.trial.user_attrs.get(PRUNED_ATTR)
        if reason and trial.status == TrialStatus.COMPLETED:
            # The tuner marks every trial whose fit returned as COMPLETED; keep the verdict.
            trial.status = TrialStatus.STOPPED
            trial.message = reason
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status == TrialStatus.STOPPED:
            # Scored on the epochs it ran, for display; get_best_trials ranks COMPLETED only.
            self.score_trial(ended)
            self._save_trial(ended)
        if running is not None:
            self._tell(running.trial, ended)
            del self._running[trial.trial_id]

    def _tell(self, optuna_trial: optuna.Trial, trial: Trial) -> None:
        if trial.status == TrialStatus.COMPLETED:
            self.study.tell(optuna_trial, float(trial.score))
        elif trial.status == TrialStatus.STOPPED:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.PRUNED)
        else:  # FAILED, or INVALID (to be retried as a new Optuna trial)
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)

    def _vectorize_trials(self) -> Any:
        # Keras Tuner's Bayesian oracle knows COMPLETED, FAILED and INVALID trials only (a
        # STOPPED one would silently take the previous trial's score); it is shown a pruned
        # trial as the score it had reached, as Optuna's TPE ranks one by its last value.
        pruned = [t for t in self.trials.values() if t.status == TrialStatus.STOPPED]
        for trial in pruned:
            trial.status = TrialStatus.COMPLETED
        try:
            return super()._vectorize_trials()
        finally:
            for trial in pruned:
                trial.status = TrialStatus.STOPPED

    def _pruning_reason(self, optuna_trial: optuna.Trial, value: float, step: int) -> str:
        """One line: the epoch, the pruner, the trial's value and, for context, the median of
        the completed trials at that epoch (what Optuna's median pruner compares with)."""
        completed = [
            t.intermediate_values[step + 1]
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if step + 1 in t.intermediate_values
        ]
        context = (
            f"; median of {len(completed)} completed trials there "
            f"{statistics.median(completed):.4f}"
            if completed
            else ""
        )
        return (
            f"pruned by {type(self.pruner).__name__} after epoch {step + 1}: "
            f"{self.objective.name} {value:.4f}{context}"
        )


@dataclass
class _RunningTrial:
    """An Optuna trial in progress and the steps it has reported."""

    trial: optuna.Trial
    reported_steps: set[int]

    @classmethod
    def of(cls, study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> _RunningTrial:
        # Optuna offers no public look-up of a running trial; its Trial class takes the
        # storage's id, which FrozenTrial keeps in `_trial_id`.
        reported = {step - 1 for step in frozen.intermediate_values}  # epochs trained -> index
        return cls(optuna.trial.Trial(study, frozen._trial_id), reported)
