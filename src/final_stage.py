"""The final stage: retrain the best configuration, test it once, hand it to the registry.

The seed study's protocol: the best trial's hyperparameters and its best epoch count,
retrained from scratch on train + validation with the training seed, then evaluated once
on the held-out test split (`evaluate`, a pure function of a model and a split). Figures,
``model_card.md`` and ``final.json`` go to ``<run folder>/final/``; with tracking on, a
``final`` child run holds them and the model is registered (``src.registry``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from src import registry, report
from src.backend import configure_backend, keras_verbosity
from src.data import Dataset, Split
from src.hypermodel import CNNHyperModel
from src.results import SearchResult
from src.tracking import MLflowTracker

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """A model's predictions on a split, and what they add up to."""

    accuracy: float
    loss: float
    confusion: np.ndarray
    probabilities: np.ndarray = field(repr=False)

    @property
    def per_class_accuracy(self) -> list[float]:
        return (np.diag(self.confusion) / np.maximum(self.confusion.sum(axis=1), 1)).tolist()


def evaluate(model: keras.Model, split: Split, num_classes: int) -> Evaluation:
    """Accuracy, loss and confusion matrix of ``model`` on ``split``, from one pass.

    The accuracy is counted exactly (Keras' float32 running mean can differ in the last
    digits, which would let a tie count as a win against the champion).
    """
    probabilities = model.predict(split.images, verbose=0)
    loss = keras.ops.convert_to_numpy(
        keras.losses.sparse_categorical_crossentropy(split.labels, probabilities)
    )
    predicted = probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (split.labels, predicted), 1)
    return Evaluation(
        accuracy=float(np.mean(predicted == split.labels)),
        loss=float(np.mean(loss)),
        confusion=confusion,
        probabilities=probabilities,
    )


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
        The test metrics and the registry's decision.
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
        "final stage: retraining trial %s's configuration on %d examples for %d epochs",
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
    evaluation = evaluate(model, test, dataset.num_classes)
    final = FinalResult(
        test_accuracy=evaluation.accuracy,
        test_loss=evaluation.loss,
        per_class_accuracy=evaluation.per_class_accuracy,
        epochs=epochs,
        hyperparameters=values,
    )
    log.info("final stage: test_accuracy=%.4f test_loss=%.4f", final.test_accuracy, final.test_loss)

    out = Path(cfg.paths.output_dir) / "final"
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        report.plot_learning_curves(history, out / "learning_curves.png"),
        report.plot_confusion_matrix(evaluation.confusion, out / "confusion_matrix.png"),
        report.plot_worst_misclassified(
            test.images, test.labels, evaluation.probabilities, out / "worst_misclassified.png"
        ),
        report.plot_trial_scores(
            [asdict(t) for t in search.trials],
            search.objective,
            out / "trial_scores.png",
            search_space,
        ),
    ]
    if tracker is not None:
        _log_final_run(cfg, tracker, final, history, figures)
        if cfg.final.register:
            _register(cfg, tracker, model, final, dataset)
        else:
            final.decision = "not registered (final.register=false)"
    final.wall_time_s = round(time.perf_counter() - start, 2)
    facts = {
        **asdict(final),
        "model_name": cfg.final.model_name,
        "tuner": cfg.tuner.name,
        "search_space": cfg.search_space.name,
        "data": dataset.describe(),
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "model_uri": (
            f"models:/{cfg.final.model_name}/{final.model_version}" if final.model_version else None
        ),
    }
    card = report.write_model_card(out / "model_card.md", facts)
    (out / "final.json").write_text(json.dumps(facts, indent=2) + "\n")
    if tracker is not None:
        tracker.client.log_artifact(final.run_id, str(card))
        tracker.client.log_artifact(final.run_id, str(out / "final.json"))
        tracker.client.set_terminated(final.run_id, "FINISHED")
    log.info("final stage: %s", final.decision)
    return final


def _log_final_run(
    cfg: DictConfig,
    tracker: MLflowTracker,
    final: FinalResult,
    history: dict[str, list[float]],
    figures: list[Path],
) -> None:
    """Open the ``final`` run under the search's parent and log what was measured."""
    client = tracker.client
    run = client.create_run(
        tracker.experiment_id,
        run_name="final",
        tags={MLFLOW_PARENT_RUN_ID: tracker.parent_run_id, "run_kind": "final"},
    )
    final.run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(name, str(value)) for name, value in final.hyperparameters.items()]
    params.append(Param("final_epochs", str(final.epochs)))
    headline = [
        Metric("test_accuracy", final.test_accuracy, now, 0),
        Metric("test_loss", final.test_loss, now, 0),
    ]
    metrics = [*headline]
    metrics += [
        Metric(f"test_accuracy_digit_{digit}", accuracy, now, 0)
        for digit, accuracy in enumerate(final.per_class_accuracy)
    ]
    metrics += [
        Metric(f"final_{name}", float(value), now, epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values)
    ]
    client.log_batch(final.run_id, metrics=metrics, params=params)
    for figure in figures:
        client.log_artifact(final.run_id, str(figure))
    # The parent carries the headline figures too, so the search list shows them.
    client.log_batch(tracker.parent_run_id, metrics=headline)


def _register(
    cfg: DictConfig,
    tracker: MLflowTracker,
    model: keras.Model,
    final: FinalResult,
    dataset: Dataset,
) -> None:
    """Log and register the model, then let the registry decide on its aliases."""
    client, name, test = tracker.client, cfg.final.model_name, dataset.test
    source = registry.log_model(client, final.run_id, model, test.images[:5])
    version = registry.register(client, name, source, final.run_id)

    def champion_accuracy(champion_version: str) -> float | None:
        try:
            champion = registry.load_version(tracker.tracking_uri, name, champion_version)
            return evaluate(champion, test, dataset.num_classes).accuracy
        except (OSError, ValueError) as error:  # e.g. a model trained for other inputs
            log.warning("cannot evaluate %s version %s here: %s", name, champion_version, error)
            return None

    outcome = registry.promote(client, name, version, final.test_accuracy, champion_accuracy)
    registry.record_promotion(client, final.run_id, outcome)
    final.model_version = outcome.model_version
    final.promoted = outcome.promoted
    final.decision = outcome.decision
    final.champion_accuracy = outcome.champion_accuracy
