"""`OptunaSearch` (the ``tuner=tpe`` class) and `enable_pruning` for Keras Tuner's own tuners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras_tuner

from src.search.optuna.oracle import OptunaOracle
from src.search.optuna.specs import make_pruner
from src.search.optuna.study import OptunaStudyMixin


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
        OptunaSpecError: a bad spec. (Which tuners refuse a pruner is
            ``src.search.capabilities``'s to say, before the tuner is built.)
    """
    pruner = make_pruner(spec)
    if pruner is None:
        return
    if not isinstance(oracle, OptunaStudyMixin):
        base = type(oracle)
        oracle.__class__ = type(f"Pruned{base.__name__}", (OptunaStudyMixin, base), {})
    oracle.pruner = pruner
    oracle.last_step = epochs - 1 if epochs else None
