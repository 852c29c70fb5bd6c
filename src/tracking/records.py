"""The project's facts as MLflow records: timestamps, parameter batches, a search's tags.

One home for what every run writer needs (the tracker, the final run, the registry's
decision), so each writes the same shapes in the same way.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Any

import keras
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Param
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT
from omegaconf import DictConfig

from src.data.dataset import Dataset
from src.tracking.provenance import TRACKED_PACKAGES, git_commit, installed_versions

SEARCH_ID_TAG = "search_id"
# MLflow's limits per log_batch call and per tag value.
MAX_PARAMS_PER_BATCH = 100
MAX_TAG_LENGTH = 5000


def now_ms() -> int:
    """MLflow's timestamp for a metric logged now (milliseconds since the epoch)."""
    return int(time.time() * 1000)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log parameters in as many batches as MLflow's per-call limit needs."""
    entries = [Param(name, str(value)) for name, value in params.items()]
    for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
        client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH])


def search_tags(cfg: DictConfig, dataset: Dataset) -> dict[str, str]:
    """The parent run's tags: what was searched, on which digits, with which code and packages."""
    tags = {
        "run_kind": "search",
        "tuner": str(cfg.tuner.name),
        "search_space": str(cfg.search_space.name),
        "objective": str(cfg.tuner.objective),
        "data.source": dataset.name,
        "data.origin": dataset.origin,
        "data.digest": dataset.digest,
        "data.train_size": str(len(dataset.train)),
        "data.val_size": str(len(dataset.val)),
        "data.test_size": str(len(dataset.test)),
        MLFLOW_GIT_COMMIT: git_commit(),
    }
    tags["keras_backend"] = keras.backend.backend()
    tags.update(sweep_tags())
    if cfg.distributed.search_id:
        tags[SEARCH_ID_TAG] = str(cfg.distributed.search_id)
    if dataset.note:
        tags["data.note"] = dataset.note[:MAX_TAG_LENGTH]
    tags.update({f"version.{name}": v for name, v in installed_versions(TRACKED_PACKAGES).items()})
    return tags


def sweep_tags() -> dict[str, str]:
    """In a Hydra multirun, the sweep's folder and the job's number, so that the MLflow UI can
    group a sweep's searches (``tags.sweep = '...'``); else none."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return {}
    hydra = HydraConfig.get()
    return {"sweep": str(hydra.sweep.dir), "sweep.job": str(hydra.job.num)}


def dataset_input(dataset: Dataset) -> DatasetInput:
    """The training digits as an MLflow dataset input (name, origin, digest)."""
    import mlflow.data

    with warnings.catch_warnings():
        # MLflow registers two equivalent local-file source kinds and warns that both fit.
        warnings.filterwarnings("ignore", message="The specified dataset source can be")
        logged = mlflow.data.from_numpy(
            features=dataset.train.images,
            targets=dataset.train.labels,
            source=dataset.origin,
            name=dataset.name,
            digest=dataset.digest[:32],  # MLflow keeps at most 36 characters
        )
    return DatasetInput(logged._to_mlflow_entity(), [InputTag("mlflow.data.context", "train")])
