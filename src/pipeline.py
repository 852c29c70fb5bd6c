"""The pipeline: load the data, run the tracked search, then the final stage.

With ``final.from_results`` there is no search: the configuration an earlier run recorded
(its ``results.json`` or ``final/final.json``, or ``shipped``: the shipped study's best)
goes straight to the final stage, e.g. to retrain the fast study's best on full MNIST. That
is retraining a known answer, not tuning, and is logged as such.

`run_pipeline` is what ``python -m src.run`` does once the config is validated; tests and
``bench/`` call it directly instead of rebuilding it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from src.budget import RunBudget
from src.data.dataset import Dataset
from src.data.development import run_dataset
from src.errors import ConfigError
from src.final.result import FinalResult
from src.final.stage import run_final_stage
from src.search.observers import TrialObserver
from src.search.results import SearchResult, recorded_search
from src.search.run_state import check_run_folder
from src.search.stage import run_search
from src.search.warm_start import recorded_file
from src.tracking.tracker import tracked_search

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    """What one run produced: the data it used, the search, and the final stage's result.

    ``search`` is None on a distributed worker (the chief holds the results); ``final`` is
    None when the final stage is off.
    """

    dataset: Dataset
    search: SearchResult | None
    final: FinalResult | None = None


def run_pipeline(
    cfg: DictConfig, observers: Sequence[TrialObserver] = (), started: float | None = None
) -> PipelineResult:
    """Load the configured data, run the tracked search, then the final stage.

    Args:
        cfg: A validated root config (``src.config.validate_config``).
        observers: More listeners to the search's hooks, after the MLflow tracker.
        started: When the run started (``time.monotonic()``), for ``budget``; default now.

    Returns:
        The data, the search's result and the final stage's result.

    Raises:
        ConfigError, DataError, SearchFailed, DistributedError: with a one-line message for
            the user.
    """
    if not cfg.final.from_results and cfg.distributed.role != "worker":
        check_run_folder(cfg)  # before anything is loaded, opened or overwritten
    budget = None
    if cfg.get("budget") is not None:  # one clock for the search and the final stage
        folder = Path(cfg.paths.output_dir)
        policy = OmegaConf.to_container(cfg.budget_policy, resolve=True)
        if not cfg.final.enabled:
            policy["final_share"] = 0.0  # the search has all of it
        budget = RunBudget.start(cfg.budget, folder, policy, resume=cfg.resume, started=started)
    dataset = run_dataset(cfg)
    _check_batch_size(cfg, dataset)
    with tracked_search(cfg, dataset, resume=cfg.resume) as tracker:
        listeners = [tracker, *observers] if tracker else list(observers)
        if cfg.final.from_results:
            search = _recorded(cfg, listeners, budget)
        else:
            search = run_search(cfg, dataset, observers=listeners, budget=budget)
        result = PipelineResult(dataset, search)
        if search is not None and cfg.final.enabled:
            result.final = run_final_stage(cfg, dataset, search, tracker, budget)
    return result


def _check_batch_size(cfg: DictConfig, dataset: Dataset) -> None:
    """A batch larger than the training digits is what one batch of all of them does (one
    step per epoch): trained and recorded as that, with a warning, so that MLflow and
    ``results.json`` never show a batch size that was not used."""
    batch, digits = cfg.training.batch_size, len(dataset.train)
    if batch > digits:
        log.warning(
            "training.batch_size=%d is larger than the %d training digits of %s: batches "
            "of %d (one step per epoch) are trained and recorded",
            batch,
            digits,
            dataset.name,
            digits,
        )
        cfg.training.batch_size = digits


def _recorded(
    cfg: DictConfig, listeners: Sequence[TrialObserver], budget: RunBudget | None
) -> SearchResult:
    """No search: the configuration ``final.from_results`` recorded, for the final stage,
    which has all of the budget."""
    try:
        search = recorded_search(recorded_file(cfg.final.from_results, cfg.search_space.name))
    except (ValueError, TypeError) as error:  # not JSON, or not a record of a configuration
        raise ConfigError(f"final.from_results={cfg.final.from_results!r}: {error}") from None
    log.info("retraining the configuration recorded in %s (no search)", cfg.final.from_results)
    if budget is not None:
        budget.search_s = 0.0
        budget.search_stopped_because = f"no search: final.from_results={cfg.final.from_results}"
    search.write(Path(cfg.paths.output_dir))
    for listener in listeners:
        listener.on_recorded_search(Path(cfg.paths.output_dir))
        listener.on_search_result(search)
    return search
