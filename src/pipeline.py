"""The pipeline: load the data, run the tracked search, then the final stage.

`run_pipeline` is what ``python -m src.run`` does once the config is validated; tests and
``bench/`` call it directly instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from src.data import Dataset, load_dataset
from src.final_stage import FinalResult, run_final_stage
from src.observers import TrialObserver
from src.results import SearchResult
from src.tracking import tracked_search
from src.tuning import run_search


@dataclass
class PipelineResult:
    """What one run produced: the data it used, the search, and the final stage's result.

    ``search`` is None on a distributed worker (the chief holds the results); ``final`` is
    None when the final stage is off.
    """

    dataset: Dataset
    search: SearchResult | None
    final: FinalResult | None = None


def run_pipeline(cfg: DictConfig, observers: Sequence[TrialObserver] = ()) -> PipelineResult:
    """Load the configured data, run the tracked search, then the final stage.

    Args:
        cfg: A validated root config (``src.config.validate_config``).
        observers: More listeners to the search's hooks, after the MLflow tracker.

    Returns:
        The data, the search's result and the final stage's result.

    Raises:
        DataError, SearchFailed, DistributedError: with a one-line message for the user.
    """
    dataset = load_dataset(
        OmegaConf.to_container(cfg.data, resolve=True), cfg.training.val_fraction
    )
    with tracked_search(cfg, dataset, resume=cfg.resume) as tracker:
        listeners = [tracker, *observers] if tracker else list(observers)
        search = run_search(cfg, dataset, observers=listeners)
        result = PipelineResult(dataset, search)
        if search is not None and cfg.final.enabled:
            result.final = run_final_stage(cfg, dataset, search, tracker)
    return result
