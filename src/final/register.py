"""Hand the final model to the registry: log it, register it, and let it decide the aliases."""

from __future__ import annotations

import logging

import keras
import numpy as np
from omegaconf import DictConfig

from src.data.dataset import Dataset
from src.final.evaluation import Evaluation, evaluate
from src.final.result import FinalResult
from src.registry.model_log import log_model
from src.registry.promote import promote
from src.registry.versions import load_version, register, registered_for
from src.tracking.final_run import record_promotion
from src.tracking.tracker import MLflowTracker

log = logging.getLogger("src.final.stage")


def register_final_model(
    cfg: DictConfig,
    tracker: MLflowTracker,
    model: keras.Model,
    final: FinalResult,
    evaluation: Evaluation,
    dataset: Dataset,
) -> None:
    """Log and register the model, then let the registry decide on its aliases.

    Idempotent across a resume: a version an earlier attempt of this search's final stage
    registered (a crash before its aliases were set) is the one decided on, not a copy.
    """
    client, name, test = tracker.client, cfg.final.model_name, dataset.test
    version = registered_for(client, name, tracker.parent_run_id)
    if version is None:
        source = log_model(client, final.run_id, model, test.images[:5])
        version = register(client, name, source, final.run_id, tracker.parent_run_id)
    else:
        log.info("final stage: version %s was registered by an earlier attempt", version)

    def champion_right(champion_version: str) -> np.ndarray | None:
        try:
            champion = load_version(tracker.tracking_uri, name, champion_version)
            return evaluate(champion, test, dataset.num_classes).right
        except (OSError, ValueError) as error:  # e.g. a model trained for other inputs
            log.warning("cannot evaluate %s version %s here: %s", name, champion_version, error)
            return None

    outcome = promote(
        client,
        name,
        version,
        evaluation.interval,
        evaluation.right,
        dataset.test_digest,
        champion_right,
        rule=cfg.final.promotion,
        alpha=cfg.final.alpha,
    )
    record_promotion(client, final.run_id, outcome)
    final.model_version = outcome.model_version
    final.promoted = outcome.promoted
    final.decision = outcome.decision
    final.champion_version = outcome.champion_version
    if outcome.champion_accuracy is not None:
        final.champion_accuracy = outcome.champion_accuracy.value
    if outcome.comparison is not None:
        final.mcnemar = outcome.comparison.to_dict()
