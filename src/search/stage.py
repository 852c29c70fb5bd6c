"""The search stage: build the configured tuner, run it, and summarise what it found.

The tuner comes from ``src.search.tuner_factory``; progress lines and the MLflow tracker
hear every trial through ``src.search.observers``; ``results.json`` is written here.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
from omegaconf import DictConfig, OmegaConf

from src.budget import VALIDATION_WEIGHT, RunBudget
from src.data.dataset import Dataset
from src.errors import SearchFailed
from src.model.backend import StopAtDeadline, StopWhenAsked, configure_backend, keras_verbosity
from src.model.hypermodel import CNNHyperModel
from src.model.search_space import distinct_configurations
from src.search.budgeting import measure_costs, search_subset, why_the_search_ended
from src.search.distributed import tuner_id
from src.search.importance import LearningCurves, hyperparameter_importance
from src.search.observers import TooManyFailedTrials, TrialObserver
from src.search.progress import ProgressReporter, format_duration
from src.search.results import SearchResult, format_trials, format_values, summarize
from src.search.tradeoffs import format_front, front_record
from src.search.tuner_factory import build_tuner

log = logging.getLogger(__name__)


def run_search(
    cfg: DictConfig,
    dataset: Dataset,
    observers: Sequence[TrialObserver] = (),
    budget: RunBudget | None = None,
) -> SearchResult | None:
    """Run the configured search on a dataset and write ``results.json``.

    On a distributed worker (``distributed.role=worker``) it runs the trials the chief hands
    out and returns None: the chief writes the results.

    Args:
        cfg: The validated root config.
        dataset: The split dataset (the test split is not touched here).
        observers: Extra observers of the tuner's hooks (progress lines are always on).
        budget: The run's time budget (``budget``), shared with the final stage.

    Returns:
        Every trial and the best one (None on a worker).

    Raises:
        SearchFailed: no trial completed, or Keras Tuner stopped after too many failures.
        ConfigError: a budget too small for a search (`measure_costs`).
    """
    training = OmegaConf.to_container(cfg.training, resolve=True)
    tuner_cfg = OmegaConf.to_container(cfg.tuner, resolve=True)
    # A resumed search reloads the tuner's state from its folder; a new one starts afresh.
    tuner_cfg["overwrite"] = not cfg.get("resume", False)
    search_space = OmegaConf.to_container(cfg.search_space, resolve=True)
    configure_backend(training)

    hypermodel = CNNHyperModel.from_config(search_space, training, dataset)
    _warn_if_the_space_is_smaller_than_the_search(search_space, tuner_cfg.get("max_trials"))
    train = search_subset(dataset.train, tuner_cfg.get("search_examples"), cfg.data.split_seed)
    role = cfg.distributed.role
    if budget is not None:
        measure_costs(budget, cfg, dataset, hypermodel, train)
    examples_per_epoch = len(train) + VALIDATION_WEIGHT * len(dataset.val)
    progress = ProgressReporter(budget)
    curves = LearningCurves(tuner_cfg["objective"])
    tuner = build_tuner(
        tuner_cfg,
        hypermodel,
        [progress, curves, *observers],
        training["seed"],
        training["epochs"],
        role=role,
        chief_timeout_s=cfg.distributed.chief_timeout_s,
        budget=budget,
        examples_per_epoch=examples_per_epoch,
        state_folder=Path(cfg.paths.output_dir),
    )
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor=tuner_cfg["objective"], patience=training["early_stopping_patience"]
        ),
        keras.callbacks.TerminateOnNaN(),
        StopWhenAsked(),
    ]
    if budget is not None:  # a trial still running at the search's deadline stops there
        callbacks.append(StopAtDeadline(budget.search_left))
    log.info(
        "searching %s over %s: %d train%s / %d validation digits from %s%s",
        tuner_cfg["name"],
        search_space.get("name"),
        len(train),
        f" (of {len(dataset.train)})" if len(train) < len(dataset.train) else "",
        len(dataset.val),
        dataset.name,
        f", budget {format_duration(budget.total_s)}" if budget is not None else "",
    )
    # Every trial's model is dropped with a full garbage collection (Keras Tuner's
    # clear_session), which walked TensorFlow's and MLflow's imports each time: about 0.5 s a
    # trial on 2 cores. What exists now lives as long as the process; frozen, it is skipped.
    gc.collect()
    gc.freeze()
    stopped_early = None
    start = time.perf_counter()
    try:
        tuner.search(
            train.images,
            train.labels,
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
    result = summarize(
        tuner,
        time.perf_counter() - start,
        dataset.describe(),
        epochs_budget=training["epochs"],
        scored_digits=_scored_digits(dataset, tuner_cfg),
    )
    result.stopped_early = stopped_early
    result.data["search_examples"] = len(train)
    if budget is not None:
        budget.search_s = round(time.perf_counter() - start, 2)
        if budget.search_stopped_because is None:
            budget.search_stopped_because = why_the_search_ended(tuner)
        result.budget = budget.to_dict()
        budget.save(Path(cfg.paths.output_dir))

    importance = hyperparameter_importance(result, curves.curves, seed=training["seed"])
    result.importance = importance.to_dict()
    result.pareto_front = front_record(result)
    result.write(Path(cfg.paths.output_dir))
    for observer in observers:
        observer.on_search_result(result)
    log.info(
        "trials:\n%s\n%s\n%s",
        format_trials(result),
        importance.format(),
        format_front(result.pareto_front, result.objective),
    )

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


def _warn_if_the_space_is_smaller_than_the_search(
    search_space: dict[str, Any], max_trials: int | None
) -> None:
    distinct = distinct_configurations(search_space)
    if distinct is not None and max_trials and distinct < max_trials:
        log.warning(
            "search_space %s holds %d distinct configuration(s): at most %d of "
            "tuner.max_trials=%d trials can run",
            search_space.get("name"),
            distinct,
            distinct,
            max_trials,
        )


def _scored_digits(dataset: Dataset, tuner_cfg: Mapping[str, Any]) -> int:
    """How many digits a trial's score is measured on: the validation split, or under
    cross-validation every training and validation digit, each scored once."""
    if (tuner_cfg.get("cv_folds") or 1) > 1:
        return len(dataset.train) + len(dataset.val)
    return len(dataset.val)
