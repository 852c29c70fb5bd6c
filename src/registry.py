"""The final stage: retrain the best configuration, test it once, register it in MLflow.

The seed study's protocol: the best trial's hyperparameters and its best epoch count,
retrained from scratch on train + validation with the training seed, then evaluated once
on the held-out test split. The model is logged with MLflow's Keras flavour and registered;
the new version gets the alias ``challenger`` and becomes ``champion`` only if it beats the
current champion on this same test split (the champion is re-evaluated here, so the
comparison never mixes test sets).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from src import report
from src.data import Dataset, Split
from src.hypermodel import CNNHyperModel
from src.tracking import MLflowTracker, installed_versions
from src.tuning import SearchResult, configure_backend, keras_verbosity

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class FinalResult:
    """What the final stage measured and decided."""

    test_accuracy: float
    test_loss: float
    per_class_accuracy: list[float]
    epochs: int
    hyperparameters: dict[str, Any]
    model_version: str | None = None
    champion_accuracy: float | None = None
    promoted: bool = False
    decision: str = "not registered"
    run_id: str | None = None
    wall_time_s: float = 0.0


def fixed_hyperparameters(values: dict[str, Any]) -> keras_tuner.HyperParameters:
    """Hyperparameters with every value fixed, to rebuild one trial's model."""
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def run_final_stage(
    cfg: DictConfig,
    dataset: Dataset,
    search: SearchResult,
    tracker: MLflowTracker | None = None,
) -> FinalResult:
    """Retrain the best trial's configuration on train + validation, test it, register it.

    Args:
        cfg: The validated root config.
        dataset: The dataset the search ran on.
        search: The search's result (its best trial is retrained).
        tracker: The search's MLflow tracker; None when tracking is off (nothing registered).

    Returns:
        The test metrics and the registry's decision. Figures, ``model_card.md`` and
        ``final.json`` are written to ``<run folder>/final/``.
    """
    start = time.perf_counter()
    training = OmegaConf.to_container(cfg.training, resolve=True)
    search_space = OmegaConf.to_container(cfg.search_space, resolve=True)
    best = search.best
    values = {k: v for k, v in best.hyperparameters.items() if not k.startswith("tuner/")}
    epochs = cfg.final.epochs or (best.best_step + 1 if best.best_step is not None else None)
    epochs = epochs or training["epochs"]

    configure_backend(training)
    hypermodel = CNNHyperModel(search_space, dataset.input_shape, dataset.num_classes)
    hp = fixed_hyperparameters(values)
    model = hypermodel.build(hp)
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    log.info(
        "final stage: retraining trial %s's configuration on %d digits for %d epochs",
        best.trial_id,
        len(labels),
        epochs,
    )
    # Through the hypermodel's fit, so a learning-rate schedule applies as in the search.
    history = hypermodel.fit(
        hp,
        model,
        images,
        labels,
        epochs=epochs,
        batch_size=training["batch_size"],
        verbose=keras_verbosity(training["verbose"]),
    ).history

    test = dataset.test
    # One pass over the test digits gives the loss, the accuracy and the figures.
    probabilities = model.predict(test.images, verbose=0)
    test_loss = float(
        np.mean(
            keras.ops.convert_to_numpy(
                keras.losses.sparse_categorical_crossentropy(test.labels, probabilities)
            )
        )
    )
    predicted = probabilities.argmax(axis=1)
    # Counted exactly, as the champion is (Keras' float32 running mean can differ in the
    # last digits, which would let a tie count as a win).
    test_accuracy = float(np.mean(predicted == test.labels))
    confusion = np.zeros((dataset.num_classes, dataset.num_classes), dtype=np.int64)
    np.add.at(confusion, (test.labels, predicted), 1)
    per_class = (np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)).tolist()
    final = FinalResult(
        test_accuracy=float(test_accuracy),
        test_loss=float(test_loss),
        per_class_accuracy=per_class,
        epochs=epochs,
        hyperparameters=values,
    )
    log.info("final stage: test_accuracy=%.4f test_loss=%.4f", test_accuracy, test_loss)

    out = Path(cfg.paths.output_dir) / "final"
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        report.plot_learning_curves(history, out / "learning_curves.png"),
        report.plot_confusion_matrix(confusion, out / "confusion_matrix.png"),
        report.plot_worst_misclassified(
            test.images, test.labels, probabilities, out / "worst_misclassified.png"
        ),
        report.plot_trial_scores(
            [asdict(t) for t in search.trials], search.objective, out / "trial_scores.png"
        ),
    ]
    if tracker is not None:
        _log_and_register(cfg, tracker, model, final, history, test, figures)
    final.wall_time_s = round(time.perf_counter() - start, 2)
    facts = {
        **asdict(final),
        "model_name": cfg.final.model_name,
        "tuner": cfg.tuner.name,
        "search_space": cfg.search_space.name,
        "data": dataset.describe(),
        "model_uri": (
            f"models:/{cfg.final.model_name}/{final.model_version}" if final.model_version else None
        ),
    }
    card = report.write_model_card(out / "model_card.md", facts)
    (out / "final.json").write_text(json.dumps(facts, indent=2) + "\n")
    if tracker is not None and final.run_id:
        tracker.client.log_artifact(final.run_id, str(card))
        tracker.client.log_artifact(final.run_id, str(out / "final.json"))
    log.info("final stage: %s", final.decision)
    return final


def _log_and_register(
    cfg: DictConfig,
    tracker: MLflowTracker,
    model: keras.Model,
    final: FinalResult,
    history: dict[str, list[float]],
    test: Split,
    figures: list[Path],
) -> None:
    """Log the final run under the search's parent, register the model and move aliases."""
    client = tracker.client
    run = client.create_run(
        tracker.experiment_id,
        run_name="final",
        tags={MLFLOW_PARENT_RUN_ID: tracker.parent_run_id, "run_kind": "final"},
    )
    final.run_id = run.info.run_id
    params = [Param(name, str(value)) for name, value in final.hyperparameters.items()]
    params.append(Param("final_epochs", str(final.epochs)))
    headline = [
        Metric("test_accuracy", final.test_accuracy, 0, 0),
        Metric("test_loss", final.test_loss, 0, 0),
    ]
    metrics = [*headline]
    metrics += [
        Metric(f"test_accuracy_digit_{digit}", accuracy, 0, 0)
        for digit, accuracy in enumerate(final.per_class_accuracy)
    ]
    metrics += [
        Metric(f"final_{name}", float(value), 0, epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values)
    ]
    client.log_batch(final.run_id, metrics=metrics, params=params)
    for figure in figures:
        client.log_artifact(final.run_id, str(figure))
    # The parent carries the headline figures too, so the search list shows them.
    client.log_batch(tracker.parent_run_id, metrics=headline)

    if not cfg.final.register:
        client.set_terminated(final.run_id, "FINISHED")
        final.decision = "not registered (final.register=false)"
        return
    status = "FAILED"
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    try:
        with tempfile.TemporaryDirectory() as folder:
            # mlflow.keras.log_model(..., input_example=...) writes the example before it
            # creates its folder and fails (mlflow issue #16183): save into a folder made
            # here, then log and register that.
            saved = Path(folder) / "model"
            saved.mkdir()
            example = test.images[:5]
            mlflow.keras.save_model(
                model,
                str(saved),
                signature=mlflow.models.infer_signature(example, model.predict(example, verbose=0)),
                input_example=example[:2],
                # Pinned explicitly: inferring requirements costs ~10 s per model here.
                pip_requirements=_pip_requirements(),
            )
            client.log_artifacts(final.run_id, str(saved), "model")
        version = mlflow.register_model(f"runs:/{final.run_id}/model", cfg.final.model_name)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(final.run_id, status)
    final.model_version = str(version.version)
    _promote(cfg, client, final, test)


def _promote(cfg: DictConfig, client: mlflow.MlflowClient, final: FinalResult, test: Split) -> None:
    """Alias the new version `challenger`, and `champion` if it beats the current one."""
    name, version = cfg.final.model_name, final.model_version
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        champion = None
    client.set_registered_model_alias(name, CHALLENGER, version)
    if champion is None:
        final.promoted = True
        final.decision = f"version {version} is the first {CHAMPION} of {name}"
    else:
        final.champion_accuracy = _champion_accuracy(name, champion.version, test)
        final.promoted = (
            final.champion_accuracy is not None and final.test_accuracy > final.champion_accuracy
        )
        verb = "replaces" if final.promoted else "stays behind"
        final.decision = (
            f"version {version} (test_accuracy {final.test_accuracy:.4f}) {verb} {CHAMPION} "
            f"version {champion.version} ({_format(final.champion_accuracy)} on this test split)"
        )
    if final.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    tags = [
        RunTag("registry.decision", final.decision[:5000]),
        RunTag("registry.model_version", version),
        RunTag("registry.promoted", str(final.promoted).lower()),
    ]
    metrics = []
    if final.champion_accuracy is not None:
        metrics.append(Metric("champion_test_accuracy", final.champion_accuracy, 0, 0))
    client.log_batch(final.run_id, metrics=metrics, tags=tags)
    client.set_model_version_tag(name, version, "test_accuracy", f"{final.test_accuracy:.6f}")


def _champion_accuracy(name: str, version: str, test: Split) -> float | None:
    """The registered version's accuracy on this test split; None if it cannot take it."""
    try:
        champion = mlflow.keras.load_model(f"models:/{name}/{version}")
        predicted = champion.predict(test.images, verbose=0).argmax(axis=1)
    except Exception as error:  # e.g. a model trained for other inputs
        log.warning("cannot evaluate %s version %s on this test split: %s", name, version, error)
        return None
    return float(np.mean(predicted == test.labels))


def _format(value: float | None) -> str:
    return "not comparable" if value is None else f"{value:.4f}"


def _pip_requirements() -> list[str]:
    """The packages a served model needs, pinned to the versions that trained it."""
    packages = ("keras", "tensorflow", "tensorflow-cpu", "numpy", "mlflow")
    return [f"{name}=={version}" for name, version in installed_versions(packages).items()]
