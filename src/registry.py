"""The Model Registry: log a trained model, register it, and move its aliases.

A new version gets the alias ``challenger``; it becomes ``champion`` only if it beats the
current champion on the same test split (the champion is re-evaluated here, so the
comparison never mixes test sets). Everything goes through an `MlflowClient` bound to the
search's store: nothing here changes MLflow's global tracking URI.

    python -m src.registry champion-uri     # the URI `make serve` and `src.predict` load
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from src.provenance import installed_versions

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
# The packages a served model needs, pinned to the versions that trained it.
_MODEL_PACKAGES = ("keras", "tensorflow", "tensorflow-cpu", "numpy", "mlflow")


def champion_uri(model_name: str) -> str:
    """The URI of a registered model's champion, e.g. ``models:/mnist-cnn@champion``."""
    return f"models:/{model_name}@{CHAMPION}"


@dataclass
class Promotion:
    """What the registry decided about a new version."""

    model_version: str
    promoted: bool
    decision: str
    champion_accuracy: float | None = None


def log_model(client: MlflowClient, run_id: str, model: object, example: np.ndarray) -> str:
    """Log a Keras model under ``model/`` of a run with MLflow's Keras flavour.

    Returns:
        The model's artifact URI.
    """
    import mlflow.keras
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as folder:
        # mlflow.keras.log_model(..., input_example=...) writes the example before it
        # creates its folder and fails (mlflow issue #16183): save into a folder made
        # here, then log that.
        saved = Path(folder) / "model"
        saved.mkdir()
        mlflow.keras.save_model(
            model,
            str(saved),
            signature=infer_signature(example, model.predict(example, verbose=0)),
            input_example=example[:2],
            # Pinned explicitly: inferring requirements costs ~10 s per model here.
            pip_requirements=[
                f"{name}=={version}"
                for name, version in installed_versions(_MODEL_PACKAGES).items()
            ],
        )
        client.log_artifacts(run_id, str(saved), "model")
    return f"{client.get_run(run_id).info.artifact_uri}/model"


def register(client: MlflowClient, model_name: str, source: str, run_id: str) -> str:
    """Register a logged model as a new version of ``model_name``; returns the version."""
    try:
        client.create_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    return str(client.create_model_version(model_name, source, run_id=run_id).version)


def promote(
    client: MlflowClient,
    model_name: str,
    version: str,
    test_accuracy: float,
    champion_accuracy: Callable[[str], float | None],
) -> Promotion:
    """Alias ``version`` `CHALLENGER`, and `CHAMPION` if it beats the current champion.

    Args:
        client: A client of the registry.
        model_name: The registered model.
        version: The new version.
        test_accuracy: The new version's accuracy on the test split.
        champion_accuracy: Evaluates a registered version on the same test split (None if
            it cannot take it).
    """
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        champion = None
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if champion is None:
        outcome = Promotion(version, True, f"version {version} is the first {CHAMPION}")
    else:
        accuracy = champion_accuracy(champion.version)
        promoted = accuracy is not None and test_accuracy > accuracy
        verb = "replaces" if promoted else "stays behind"
        shown = "not comparable" if accuracy is None else f"{accuracy:.4f}"
        outcome = Promotion(
            version,
            promoted,
            f"version {version} (test_accuracy {test_accuracy:.4f}) {verb} {CHAMPION} "
            f"version {champion.version} ({shown} on this test split)",
            accuracy,
        )
    if outcome.promoted:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    client.set_model_version_tag(model_name, version, "test_accuracy", f"{test_accuracy:.6f}")
    return outcome


def record_promotion(client: MlflowClient, run_id: str, outcome: Promotion) -> None:
    """Tag the final run with the registry's decision (and the champion's accuracy)."""
    tags = [
        RunTag("registry.decision", outcome.decision[:5000]),
        RunTag("registry.model_version", outcome.model_version),
        RunTag("registry.promoted", str(outcome.promoted).lower()),
    ]
    metrics = []
    if outcome.champion_accuracy is not None:
        now_ms = int(time.time() * 1000)
        metrics.append(Metric("champion_test_accuracy", outcome.champion_accuracy, now_ms, 0))
    client.log_batch(run_id, metrics=metrics, tags=tags)


def load_version(tracking_uri: str, model_name: str, version: str) -> object:
    """A registered version as a Keras model, read from the store at ``tracking_uri``."""
    import mlflow.artifacts
    import mlflow.keras

    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(model_name, version),
            dst_path=folder,
            tracking_uri=tracking_uri,
        )
        return mlflow.keras.load_model(local)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m src.registry champion-uri``: the champion's URI from the composed config."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["champion-uri"]:
        print("usage: python -m src.registry champion-uri [override ...]", file=sys.stderr)
        return 2
    from src.compose import compose_config

    print(champion_uri(compose_config(args[1:]).final.model_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
