"""The search's side of a time budget: the trials' digits, and the costs measured before them.

``src.budget`` holds the rules; this module feeds them what only a model can tell: before
the first trial, `measure_costs` times a few batches of the model the search starts from
(its epoch cost, and a trial's fixed cost: building and tracing), then refuses a budget
too small for a search (`src.budget.RunBudget.smallest_budget_s`) before anything trains.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Mapping
from typing import Any

import keras
import keras_tuner
from omegaconf import DictConfig, OmegaConf

from src.budget import VALIDATION_WEIGHT, RunBudget
from src.data.dataset import Dataset, Split, stratified_subset
from src.errors import ConfigError
from src.model.hypermodel import CNNHyperModel, fixed_hyperparameters
from src.search.warm_start import warm_start_for

log = logging.getLogger(__name__)

# Batches timed to measure a model's cost before any trial (about a second here), and how
# many times: the median passes over one slow pass on a shared machine.
CALIBRATION_STEPS = 8
CALIBRATION_PASSES = 3


def search_digits(available: int, examples: int | None) -> int:
    """How many training digits trials train on (``tuner.search_examples``, the search's
    fidelity in digits): ``examples``, or all ``available``."""
    return available if examples is None else min(available, examples)


def search_subset(split: Split, examples: int | None, seed: int) -> Split:
    """The training digits trials train on (`search_digits` of them, stratified); the
    final stage always trains on every digit."""
    count = search_digits(len(split), examples)
    if count >= len(split):
        return split
    return Split(*stratified_subset(split.images, split.labels, count, seed))


def measure_costs(
    budget: RunBudget, cfg: DictConfig, dataset: Dataset, hypermodel: CNNHyperModel, train: Split
) -> None:
    """Tell the budget what trials and the final model train on, time the model the search
    starts from (the warm start's first configuration, else the space's default), and
    refuse a budget too small for a search.

    Raises:
        ConfigError: the budget cannot pay ``budget_policy.min_trials`` trials and the final
            stage's first epoch on this machine; the message names the smallest that can.
    """
    budget.trial_examples = len(train) + VALIDATION_WEIGHT * len(dataset.val)
    budget.final_examples = len(dataset.train) + len(dataset.val) if cfg.final.enabled else 0
    if budget.seconds_per_example is None:  # a resumed run keeps what it measured
        space = OmegaConf.to_container(cfg.search_space, resolve=True)
        warm = warm_start_for(cfg.tuner.get("warm_start"), space, cfg.tuner._target_)
        traced_s, seconds, examples = time_model(
            hypermodel, train, cfg.training.batch_size, warm[0] if warm else None
        )
        budget.observe_epoch(seconds, examples)
        budget.trial_fixed_s = max(traced_s - seconds, 0.0)
    role = cfg.distributed.role
    # Distributed workers run trials side by side, as many as the cluster has (the chief
    # cannot count them): the chief asks for one trial's time, and a worker never refuses,
    # since the chief's clock ends the search.
    trials = 1 if role == "chief" else budget.min_trials
    smallest = budget.smallest_budget_s(trials)
    log.info(
        "budget: %.0f s; a trial's first epoch costs about %.1f s (%.1f s of it fixed), an "
        "epoch of the final model about %.1f s; the final stage keeps %.0f s",
        budget.total_s,
        budget.trial_s(),
        budget.trial_fixed_s,
        budget.epoch_s(budget.final_examples),
        budget.final_kept_s(),
    )
    if budget.total_s < smallest and role != "worker":
        raise ConfigError(
            f"budget={cfg.budget}: too small for a search on this machine: "
            f"{trials} trial{'s' if trials > 1 else ''} (about {budget.trial_s():.1f} s each) "
            f"and the final stage need budget={math.ceil(smallest)}s or more"
        )


def time_model(
    hypermodel: CNNHyperModel,
    train: Split,
    batch_size: int,
    values: Mapping[str, Any] | None = None,
) -> tuple[float, float, int]:
    """Time one configuration's model: a first fit (building and tracing included), then the
    median of `CALIBRATION_PASSES` fits of the same few batches: seconds of each, and the
    digits timed. Timed through ``fit``, as trials and the final model train."""
    started = time.perf_counter()
    hp = fixed_hyperparameters(dict(values)) if values else keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    batch = min(batch_size, len(train))
    # Whole batches only: a last, smaller batch would trace the step again.
    count = batch * max(1, min(CALIBRATION_STEPS, len(train) // batch))
    images, labels = train.images[:count], train.labels[:count]
    model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)
    traced = time.perf_counter() - started
    passes = []
    for _ in range(CALIBRATION_PASSES):
        start = time.perf_counter()
        model.fit(images, labels, batch_size=batch, epochs=1, verbose=0)
        passes.append(time.perf_counter() - start)
    keras.backend.clear_session()
    return traced, statistics.median(passes), count


def why_the_search_ended(tuner: keras_tuner.Tuner) -> str:
    """Why a budgeted search ended before its budget did: its trial cap, or its tuner."""
    trials = len(getattr(tuner.oracle, "trials", {}) or {})
    cap = getattr(tuner.oracle, "max_trials", None)
    if cap and trials >= cap:
        return f"tuner.max_trials={cap} reached within the budget"
    return f"the tuner proposed no more trials after {trials}"
