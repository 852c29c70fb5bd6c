"""The search stage: build the configured Keras Tuner tuner and run it.

Tuners are configured, not coded: ``conf/tuner/<name>.yaml`` names any Keras Tuner class
(``_target_``) and its arguments; `tuner_class` checks that the class is a Keras Tuner
tuner and takes every argument given. The class is wrapped with `ObservedTunerMixin`
(``src.observers``), so progress lines and the MLflow tracker hear every trial.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from src.backend import StopWhenAsked, configure_backend, keras_verbosity
from src.config import ConfigError
from src.data import Dataset
from src.distributed import tuner_id
from src.hypermodel import CNNHyperModel
from src.observers import ObservedTunerMixin, TooManyFailedTrials, TrialObserver
from src.optuna_oracle import OptunaSearch, enable_pruning
from src.optuna_specs import OptunaSpecError, make_pruner
from src.progress import ProgressReporter, format_duration
from src.results import SearchResult, format_trials, format_values, summarize

log = logging.getLogger(__name__)

# Keys of conf/tuner/*.yaml that are the project's, not arguments of the tuner class.
_PROJECT_TUNER_KEYS = ("_target_", "name", "pruner", "cv_folds")


class SearchFailed(RuntimeError):
    """The search produced no usable result (every trial failed, or Keras Tuner gave up)."""


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
        if key not in (*_PROJECT_TUNER_KEYS, "max_trials") and key not in accepted:
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
    **distributed: Any,
) -> keras_tuner.Tuner:
    """Instantiate the configured Keras Tuner class, wrapped with `ObservedTunerMixin`.

    Args:
        tuner_cfg: The ``tuner`` config node, resolved to a plain mapping.
        hypermodel: The hypermodel to tune.
        observers: Receive the tuner's hooks, in order.
        trial_seed: The seed every trial starts from.
        epochs: The epochs each trial is scheduled to train (a pruner never cuts the last).
        distributed: ``role`` (chief, worker or None) and ``chief_timeout_s``.

    Returns:
        The tuner, ready to ``search``.
    """
    kwargs = {k: v for k, v in tuner_cfg.items() if k not in _PROJECT_TUNER_KEYS}
    cls = tuner_class(tuner_cfg)
    takes_max_trials = "max_trials" in _accepted_arguments(cls)
    max_trials = None if takes_max_trials else kwargs.pop("max_trials", None)
    if "seed" in kwargs and not issubclass(cls, OptunaSearch):  # TPE mixes its own (trial_seed)
        kwargs["seed"] = keras_tuner_seed(kwargs["seed"])
    pruner = tuner_cfg.get("pruner")
    observed_class = type(f"Observed{cls.__name__}", (ObservedTunerMixin, cls), {})
    try:
        tuner = observed_class(
            hypermodel=hypermodel,
            observers=observers,
            trial_seed=trial_seed,
            reports_epochs=make_pruner(pruner) is not None,
            cv_folds=tuner_cfg.get("cv_folds") or 1,
            **distributed,
            **kwargs,
        )
        if isinstance(tuner.oracle, keras_tuner.Oracle):  # not a worker's client of the chief
            enable_pruning(tuner.oracle, pruner, epochs)
    except OptunaSpecError as error:
        raise ConfigError(str(error)) from None
    if max_trials is not None:
        # Hyperband takes no max_trials, but the base Oracle honours it as a cap on trials.
        tuner.oracle.max_trials = max_trials
    return tuner


def run_search(
    cfg: DictConfig, dataset: Dataset, observers: Sequence[TrialObserver] = ()
) -> SearchResult | None:
    """Run the configured search on a dataset and write ``results.json``.

    On a distributed worker (``distributed.role=worker``) it runs the trials the chief hands
    out and returns None: the chief writes the results.

    Args:
        cfg: The validated root config.
        dataset: The split dataset (the test split is not touched here).
        observers: Extra observers of the tuner's hooks (progress lines are always on).

    Returns:
        Every trial and the best one (None on a worker).

    Raises:
        SearchFailed: no trial completed, or Keras Tuner stopped after too many failures.
    """
    training = OmegaConf.to_container(cfg.training, resolve=True)
    tuner_cfg = OmegaConf.to_container(cfg.tuner, resolve=True)
    # A resumed search reloads the tuner's state from its folder; a new one starts afresh.
    tuner_cfg["overwrite"] = not cfg.get("resume", False)
    search_space = OmegaConf.to_container(cfg.search_space, resolve=True)
    configure_backend(training)

    hypermodel = CNNHyperModel(
        search_space, dataset.input_shape, dataset.num_classes, training["precision"]
    )
    progress = ProgressReporter()
    role = cfg.distributed.role
    tuner = build_tuner(
        tuner_cfg,
        hypermodel,
        [progress, *observers],
        training["seed"],
        training["epochs"],
        role=role,
        chief_timeout_s=cfg.distributed.chief_timeout_s,
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=tuner_cfg["objective"], patience=training["early_stopping_patience"]
        ),
        keras.callbacks.TerminateOnNaN(),
        StopWhenAsked(),
    ]
    log.info(
        "searching %s over %s: %d train / %d validation digits from %s",
        tuner_cfg["name"],
        search_space.get("name"),
        len(dataset.train),
        len(dataset.val),
        dataset.name,
    )
    stopped_early = None
    start = time.perf_counter()
    try:
        tuner.search(
            dataset.train.images,
            dataset.train.labels,
            validation_data=(dataset.val.images, dataset.val.labels),
            epochs=training["epochs"],
            batch_size=training["batch_size"],
            callbacks=callbacks,
            verbose=keras_verbosity(training["verbose"]),
        )
    except TooManyFailedTrials as error:
        stopped_early = str(error)
    if role == "worker":
        # The chief holds the oracle: it summarises the search and runs the final stage.
        log.info(
            "worker %s: the chief has no more trials; this worker ran %d in %s",
            tuner_id(),
            len(progress.durations),
            format_duration(time.perf_counter() - start),
        )
        return None
    cross_validated = tuner.cv_folds > 1
    result = summarize(
        tuner,
        time.perf_counter() - start,
        dataset.describe(),
        epochs_budget=training["epochs"],
        # Under cross-validation every training and validation digit is scored once.
        scored_digits=len(dataset.train) + len(dataset.val) if cross_validated else None,
    )
    result.stopped_early = stopped_early

    result.write(Path(cfg.paths.output_dir))
    for observer in observers:
        observer.on_search_result(result)
    log.info("trials:\n%s", format_trials(result))

    if not result.completed:
        first_error = next((t.error for t in result.trials if t.error), "no trial ran")
        raise SearchFailed(f"every trial failed; the first with: {first_error}")
    if stopped_early:
        raise SearchFailed(f"Keras Tuner stopped the search: {stopped_early}")
    best = result.best
    log.info(
        "best trial %s: %s=%.4f with %s",
        best.trial_id,
        result.objective,
        best.score,
        format_values(best.hyperparameters),
    )
    return result
