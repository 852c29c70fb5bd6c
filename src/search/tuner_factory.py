"""Build the configured Keras Tuner tuner: any Keras Tuner class, with the project's hooks.

Tuners are configured, not coded: ``conf/tuner/<name>.yaml`` names any Keras Tuner class
(``_target_``) and its arguments; `tuner_class` checks that the class is a Keras Tuner
tuner and takes every argument given.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner
import numpy as np
from hydra.utils import get_class

from src.errors import ConfigError
from src.search.behaviours import (
    CrossValidates,
    DistributedSearch,
    FailsNonFiniteLoss,
    MeasuresCost,
    ReleasesTrialGraphs,
    ReportsEpochs,
    SeedsTrials,
    SpendsBudget,
)
from src.search.capabilities import refusal
from src.search.observers import ObservedTunerMixin, TrialObserver
from src.search.optuna.specs import OptunaSpecError, make_pruner
from src.search.optuna.tuner import OptunaSearch, enable_pruning
from src.search.warm_start import enable_warm_start, warm_start_for

# Keys of conf/tuner/*.yaml that are the project's, not arguments of the tuner class.
PROJECT_TUNER_KEYS = ("_target_", "name", "pruner", "cv_folds", "search_examples", "warm_start")
# Stacked before the configured class, outermost first (see src.search.behaviours): epochs
# reach the observers before the oracle, as Keras Tuner's own hooks would order them.
_BEHAVIOURS = (
    ReleasesTrialGraphs,
    SpendsBudget,
    DistributedSearch,
    ReportsEpochs,
    ObservedTunerMixin,
    MeasuresCost,
    FailsNonFiniteLoss,
    CrossValidates,
    SeedsTrials,
)


def tuner_class(tuner_cfg: Mapping[str, Any]) -> type[keras_tuner.Tuner]:
    """The Keras Tuner class ``tuner._target_`` names, checked against the config's keys.

    Raises:
        ConfigError: the class cannot be imported, is not a Keras Tuner tuner, or does not
            take one of the keys given.
    """
    target = tuner_cfg["_target_"]
    try:
        cls = get_class(target)
    except Exception as error:  # Hydra wraps the import error in its own types
        raise ConfigError(f"tuner._target_={target!r}: cannot be imported ({error})") from None
    if not (isinstance(cls, type) and issubclass(cls, keras_tuner.Tuner)):
        raise ConfigError(f"tuner._target_={target!r}: not a keras_tuner.Tuner class")
    accepted = _accepted_arguments(cls)
    for key in tuner_cfg:
        # Hyperband takes no max_trials; `build_tuner` applies it as the oracle's cap.
        if key not in (*PROJECT_TUNER_KEYS, "max_trials") and key not in accepted:
            raise ConfigError(f"tuner.{key}: {cls.__name__} takes no such argument")
    return cls


def _accepted_arguments(cls: type) -> set[str]:
    """The keyword arguments a tuner class takes, following ``**kwargs`` up its bases."""
    accepted: set[str] = set()
    for base in cls.__mro__:
        if "__init__" not in vars(base):
            continue
        parameters = inspect.signature(vars(base)["__init__"]).parameters.values()
        accepted |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return accepted - {"self"}


def keras_tuner_seed(seed: int | None) -> int | None:
    """The seed handed to Keras Tuner's own oracles for the configured ``tuner.seed``.

    Keras Tuner draws its n-th random value with seed ``seed + n`` (`Oracle._seed_state`), so
    tuner seed s + k drew seed s's values shifted by k: over ``tuner.seed=1,2,3`` random
    search's seeds 1 and 3 shared 4 of 6 trials. Mixing the seed (numpy's SeedSequence) puts
    neighbouring seeds' streams far apart; the result is never 0, which Keras Tuner would
    replace by a random seed, and stays below 2**31 (its Bayesian oracle seeds numpy with it).
    """
    if seed is None:
        return None
    return int(np.random.SeedSequence(seed & 0xFFFFFFFF).generate_state(1)[0] >> 1) + 1


def build_tuner(
    tuner_cfg: Mapping[str, Any],
    hypermodel: keras_tuner.HyperModel,
    observers: Sequence[TrialObserver] = (),
    trial_seed: int = 0,
    epochs: int | None = None,
    **behaviours: Any,
) -> keras_tuner.Tuner:
    """Instantiate the configured Keras Tuner class under the project's behaviours.

    The class is built by stacking ``src.search.behaviours`` and `ObservedTunerMixin` before
    it (Hydra's ``instantiate`` builds a configured class as it is, without mixins, so the
    class comes from Hydra's ``get_class`` and is composed here).

    Args:
        tuner_cfg: The ``tuner`` config node, resolved to a plain mapping.
        hypermodel: The hypermodel to tune.
        observers: Receive the tuner's hooks, in order.
        trial_seed: The seed every trial starts from.
        epochs: The epochs each trial is scheduled to train (a pruner never cuts the last).
        behaviours: Keyword arguments of ``src.search.behaviours``: ``role`` (chief,
            worker or None), ``chief_timeout_s``, ``budget``, ``examples_per_epoch``,
            ``state_folder``.

    Returns:
        The tuner, ready to ``search``.
    """
    kwargs = {k: v for k, v in tuner_cfg.items() if k not in PROJECT_TUNER_KEYS}
    cls = tuner_class(tuner_cfg)
    takes_max_trials = "max_trials" in _accepted_arguments(cls)
    max_trials = None if takes_max_trials else kwargs.pop("max_trials", None)
    if "seed" in kwargs and not issubclass(cls, OptunaSearch):  # TPE mixes its own (trial_seed)
        kwargs["seed"] = keras_tuner_seed(kwargs["seed"])
    pruner = tuner_cfg.get("pruner")
    prunes = make_pruner(pruner) is not None
    cv_folds = tuner_cfg.get("cv_folds") or 1
    for option, asked in (("pruner", prunes), ("cv_folds", cv_folds > 1)):
        reason = refusal(cls, option)
        if asked and reason:
            raise ConfigError(f"tuner.{option}: {reason}")
    observed_class = type(f"Observed{cls.__name__}", (*_BEHAVIOURS, cls), {})
    try:
        tuner = observed_class(
            hypermodel=hypermodel,
            observers=observers,
            trial_seed=trial_seed,
            fold_seed=trial_seed,
            reports_epochs=prunes,
            cv_folds=cv_folds,
            **behaviours,
            **kwargs,
        )
        if isinstance(tuner.oracle, keras_tuner.Oracle):  # not a worker's client of the chief
            enable_pruning(tuner.oracle, pruner, epochs)
            space = getattr(hypermodel, "space", {})  # a stand-in hypermodel has none
            warm = warm_start_for(tuner_cfg.get("warm_start"), space, cls)
            enable_warm_start(tuner.oracle, warm)
    except OptunaSpecError as error:
        raise ConfigError(str(error)) from None
    if max_trials is not None:
        # Hyperband takes no max_trials, but the base Oracle honours it as a cap on trials.
        tuner.oracle.max_trials = max_trials
    return tuner
