"""`OptunaOracle`: a Keras Tuner oracle whose values an Optuna sampler proposes (``tuner=tpe``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras_tuner
import numpy as np
import optuna
from keras_tuner.engine import hyperparameters as hp_module
from keras_tuner.engine.trial import TrialStatus

from src.search.optuna.specs import OptunaSpecError, make_pruner, make_sampler
from src.search.optuna.study import OptunaStudyMixin

_MAX_COLLISIONS = 20


def trial_seed(seed: int, trial_number: int) -> int:
    """The sampler's seed for a search's ``trial_number``-th trial.

    Mixed rather than added (numpy's SeedSequence): with ``seed + trial_number``, tuner
    seed s + 1 proposed tuner seed s's trials shifted by one, so searches over
    ``tuner.seed=1,2,3`` shared most of their start-up trials.
    """
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, trial_number]).generate_state(1)[0])


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
