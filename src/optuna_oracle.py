"""Optuna behind Keras Tuner's oracle: TPE sampling (``tuner=tpe``) and pruning for any tuner.

Keras Tuner has neither a TPE sampler nor cross-trial pruning; Optuna has both. Rather than
re-implement them, this module keeps an Optuna study beside a Keras Tuner oracle and talks
to it through the oracle's own hooks:

- ``populate_space`` (`OptunaOracle` only) asks the study for a trial and suggests a value
  for every *active* hyperparameter, in the order the hypermodel declared them, so a
  conditional one (the filters of a layer the trial does not build) stays unset;
- ``update_trial`` reports each epoch's objective to the study's trial and, when the study's
  pruner says so, returns the trial with status ``STOPPED``; the tuner side
  (``src.observers.ObservedTunerMixin.on_epoch_end``) then stops that trial's ``fit``;
- ``end_trial`` tells the study how the trial ended (complete, pruned or failed).

`OptunaStudyMixin` (pruning) goes before any Keras Tuner oracle class; `OptunaOracle` adds
the sampling. Because every decision is taken in the oracle, and in the distributed mode the
oracle lives on the chief, pruning is central there too: workers only report epochs.

The study lives in the tuner's folder (Optuna's journal storage, ``optuna.journal``), so a
resumed search reloads it with the oracle; each Keras Tuner trial is one Optuna trial,
linked by the user attribute ``keras_tuner_trial_id``. A pruned trial ends with Keras
Tuner's status ``STOPPED`` (shown as ``PRUNED``), is scored on the epochs it ran, and is
never ranked among the completed ones.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner
import numpy as np
import optuna
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import Trial, TrialStatus
from optuna.trial import TrialState

from src.optuna_specs import OptunaSpecError, make_pruner, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

TRIAL_ID_ATTR = "keras_tuner_trial_id"
PRUNED_ATTR = "pruned"
STUDY_FILE = "optuna.journal"
_MAX_COLLISIONS = 20


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
            # which made the oracle 5-6x slower per trial (bench/oracle_cost.py, README).
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
        running.trial.report(float(value), step)
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
            t.intermediate_values[step]
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if step in t.intermediate_values
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


def trial_seed(seed: int, trial_number: int) -> int:
    """The sampler's seed for a search's ``trial_number``-th trial.

    Mixed rather than added (numpy's SeedSequence): with ``seed + trial_number``, tuner
    seed s + 1 proposed tuner seed s's trials shifted by one, so searches over
    ``tuner.seed=1,2,3`` shared most of their start-up trials.
    """
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, trial_number]).generate_state(1)[0])


@dataclass
class _RunningTrial:
    """An Optuna trial in progress and the steps it has reported."""

    trial: optuna.Trial
    reported_steps: set[int]

    @classmethod
    def of(cls, study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> _RunningTrial:
        # Optuna offers no public look-up of a running trial; its Trial class takes the
        # storage's id, which FrozenTrial keeps in `_trial_id`.
        return cls(optuna.trial.Trial(study, frozen._trial_id), set(frozen.intermediate_values))


class OptunaOracle(OptunaStudyMixin, keras_tuner.Oracle):
    """A Keras Tuner oracle whose values come from an Optuna sampler (TPE by default).

    Args:
        sampler: ``tpe`` (default), ``random``, ``gp``, ``qmc`` or any class of
            optuna.samplers, or a mapping ``{name: ..., <argument>: ...}``.
        pruner: See `make_pruner`; None for no pruning.
        **kwargs: Keras Tuner's `Oracle` arguments (objective, max_trials, seed, ...).
    """

    def __init__(
        self,
        sampler: str | Mapping[str, Any] = "tpe",
        pruner: str | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.samples_from_study = True
        make_sampler(sampler, self.seed)  # refuse a bad spec now, not at the first trial
        self.sampler_spec = sampler
        self.pruner = make_pruner(pruner)

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        # A fresh sampler per trial, seeded by the number of trials so far: Optuna keeps a
        # sampler's random state in memory only, while this makes the sequence a function of
        # the stored study, so a resumed search proposes what an uninterrupted one would.
        for _ in range(_MAX_COLLISIONS):
            done = len(self.study.get_trials(deepcopy=False))
            self.study.sampler = make_sampler(self.sampler_spec, trial_seed(self.seed, done))
            optuna_trial = self.study.ask()
            values = self._suggest(optuna_trial)
            if not self._duplicate(values):
                self._link(optuna_trial, trial_id)
                return {"status": TrialStatus.RUNNING, "values": values}
            # Tell the study what those values scored already (or that they failed), so the
            # sampler moves on instead of proposing them again.
            self._tell_duplicate(optuna_trial, values)
        return {"status": TrialStatus.STOPPED, "values": None}

    def _suggest(self, optuna_trial: optuna.Trial) -> dict[str, Any]:
        hps = hp_module.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):  # conditional values of inactive branches stay unset
                hps.values[hp.name] = suggest(optuna_trial, hp)
        return hps.values

    def _tell_duplicate(self, optuna_trial: optuna.Trial, values: Mapping[str, Any]) -> None:
        digest = self._compute_values_hash(values)
        earlier = next(
            (t for t in self.trials.values() if self._id_to_hash[t.trial_id] == digest), None
        )
        if earlier is not None and earlier.status == TrialStatus.COMPLETED:
            self.study.tell(optuna_trial, float(earlier.score))
        else:
            self.study.tell(optuna_trial, state=optuna.trial.TrialState.FAIL)


def suggest(optuna_trial: optuna.Trial, hp: Any) -> Any:
    """One Keras Tuner hyperparameter's value, suggested by an Optuna trial.

    Raises:
        OptunaSpecError: a hyperparameter Optuna cannot represent (reverse-log sampling, or
            a step on a log scale).
    """
    name = hp.name
    if isinstance(hp, hp_module.Fixed):
        return hp.value
    if isinstance(hp, hp_module.Boolean):
        return optuna_trial.suggest_categorical(name, [False, True])
    if isinstance(hp, hp_module.Choice):
        return optuna_trial.suggest_categorical(name, list(hp.values))
    sampling = getattr(hp, "sampling", "linear") or "linear"
    if sampling not in ("linear", "log"):
        raise OptunaSpecError(f"hyperparameter {name}: Optuna has no {sampling!r} sampling")
    log_scale = sampling == "log"
    step = getattr(hp, "step", None)
    if isinstance(hp, hp_module.Int):
        if log_scale and step not in (None, 1):
            raise OptunaSpecError(f"hyperparameter {name}: Optuna takes no step on a log scale")
        return optuna_trial.suggest_int(
            name, hp.min_value, hp.max_value, step=1 if log_scale else (step or 1), log=log_scale
        )
    if isinstance(hp, hp_module.Float):
        if log_scale and step is not None:
            raise OptunaSpecError(f"hyperparameter {name}: Optuna takes no step on a log scale")
        return optuna_trial.suggest_float(
            name, hp.min_value, hp.max_value, step=step, log=log_scale
        )
    raise OptunaSpecError(f"hyperparameter {name}: {type(hp).__name__} is not supported")


class OptunaSearch(keras_tuner.Tuner):
    """Keras Tuner's `Tuner` driven by `OptunaOracle`, configured like its own tuners.

    Args:
        hypermodel: The hypermodel to tune.
        objective, max_trials, seed, hyperparameters, tune_new_entries, allow_new_entries,
            max_retries_per_trial, max_consecutive_failed_trials: as for Keras Tuner's
            ``RandomSearch``.
        sampler, pruner: See `OptunaOracle`.
        **kwargs: Keras Tuner's `Tuner` arguments (directory, project_name, overwrite, ...).
    """

    def __init__(
        self,
        hypermodel: keras_tuner.HyperModel | None = None,
        objective: Any = None,
        max_trials: int = 10,
        sampler: str | Mapping[str, Any] = "tpe",
        pruner: str | Mapping[str, Any] | None = None,
        seed: int | None = None,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
        **kwargs: Any,
    ) -> None:
        oracle = OptunaOracle(
            sampler=sampler,
            pruner=pruner,
            objective=objective,
            max_trials=max_trials,
            seed=seed,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)


def enable_pruning(
    oracle: keras_tuner.Oracle, spec: str | Mapping[str, Any] | None, epochs: int | None = None
) -> None:
    """Let an oracle prune trials with the Optuna pruner ``spec`` names.

    Keras Tuner's tuner classes build their oracle inside ``__init__`` and take no oracle
    class, so the pruning mixin is added to the built oracle's class here, before any trial.

    Args:
        oracle: The built oracle (on the chief, in the distributed mode).
        spec: See `make_pruner`; None for no pruning.
        epochs: The trials' scheduled epochs, if known: a trial is never cut after its
            last one (the oracle is told epochs, not the schedule's length).

    Raises:
        OptunaSpecError: a bad spec, or an oracle that decides trial lengths itself
            (Hyperband).
    """
    pruner = make_pruner(spec)
    if pruner is None:
        return
    if isinstance(oracle, keras_tuner.oracles.HyperbandOracle):
        raise OptunaSpecError(
            "tuner.pruner: Hyperband already stops trials itself (successive halving); "
            "use tuner=tpe, random or bayesian with a pruner"
        )
    if not isinstance(oracle, OptunaStudyMixin):
        base = type(oracle)
        oracle.__class__ = type(f"Pruned{base.__name__}", (OptunaStudyMixin, base), {})
    oracle.pruner = pruner
    oracle.last_step = epochs - 1 if epochs else None
