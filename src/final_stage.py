"""The final stage: retrain the best configuration, test it once, hand it to the registry.

The seed study's protocol: the best trial's hyperparameters and its best epoch count,
retrained from scratch on train + validation, then evaluated once on the held-out test split
(``src.evaluation.evaluate``, a pure function of a model and a split), with the number of
errors and a 95 % Wilson interval. With ``final.seeds`` it is retrained once per training
seed and the spread of test accuracy across seeds is reported; the model of the *first* seed
is the one registered, a choice fixed before any test score is seen (picking the best-
scoring seed would select on the test set and overstate its accuracy). Figures,
``model_card.md`` and ``final.json`` go to ``<run folder>/final/``; with tracking on, a
``final`` child run holds them and the model is registered (``src.registry``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from omegaconf import DictConfig, OmegaConf

from src import registry, report
from src.backend import StopWhenAsked, configure_backend, keras_verbosity
from src.data import Dataset
from src.evaluation import Evaluation, evaluate
from src.hypermodel import CNNHyperModel, forward_flops
from src.results import SearchResult, TrialSummary
from src.tracking import MLflowTracker

log = logging.getLogger(__name__)


@dataclass
class FinalResult:
    """What the final stage measured and decided.

    ``test_accuracy`` and its interval are the registered model's (the first seed's, or
    the ensemble of all seeds' when ``ensemble``); ``seed_test_accuracies`` has one entry
    per seed of ``seeds``, in order.
    """

    test_accuracy: float
    test_loss: float
    test_errors: int
    test_size: int
    test_accuracy_ci_low: float
    test_accuracy_ci_high: float
    per_class_accuracy: list[float]
    epochs: int
    hyperparameters: dict[str, Any]
    seeds: list[int]
    seed_test_accuracies: list[float]
    ensemble: bool = False
    # The retrained trial, and why it (`final.choose`).
    trial_id: str | None = None
    chosen_by: str = "the best trial"
    model_version: str | None = None
    champion_accuracy: float | None = None
    champion_version: str | None = None
    mcnemar: dict[str, Any] | None = None
    promoted: bool = False
    decision: str = "not registered"
    run_id: str | None = None
    wall_time_s: float = 0.0

    @property
    def registered_model(self) -> str:
        """Which trained model is the one registered, in words."""
        if self.ensemble:
            return f"the mean of the softmax outputs of seeds {', '.join(map(str, self.seeds))}"
        return f"seed {self.seeds[0]}'s"

    @property
    def test_accuracy_mean(self) -> float:
        return float(np.mean(self.seed_test_accuracies))

    @property
    def test_accuracy_std(self) -> float:
        """Sample standard deviation across seeds (0 for one seed)."""
        values = self.seed_test_accuracies
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "registered_model": self.registered_model,
            "test_accuracy_mean": self.test_accuracy_mean,
            "test_accuracy_std": self.test_accuracy_std,
        }


def fixed_hyperparameters(values: dict[str, Any]) -> keras_tuner.HyperParameters:
    """Hyperparameters with every value fixed, to rebuild one trial's model."""
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def choose_trial(
    search: SearchResult, rule: str, hypermodel: CNNHyperModel
) -> tuple[TrialSummary, str]:
    """The trial the final stage retrains under ``final.choose``, and why, in words.

    ``best``: the search's best trial. ``cheapest_tied``: of the completed trials that
    cannot be told apart from the best (``tied_with_best``, the best itself included),
    the one whose model needs the fewest forward FLOPs per image; the better score breaks
    equal costs. Among scores that differ by noise, the cheaper model trains and serves
    faster for the same expected accuracy.
    """
    best = search.best
    tied = [t for t in search.completed if t.tied_with_best or t.trial_id == best.trial_id]
    if rule == "best" or len(tied) < 2:
        return best, "the best trial"

    def cost(trial: TrialSummary) -> int:
        values = {k: v for k, v in trial.hyperparameters.items() if not k.startswith("tuner/")}
        return forward_flops(hypermodel.build(fixed_hyperparameters(values)))

    costs = {t.trial_id: cost(t) for t in tied}
    chosen = min(tied, key=lambda t: (costs[t.trial_id], -(t.score or 0.0)))
    reason = (
        f"the cheapest of {len(tied)} trials tied with the best "
        f"({costs[chosen.trial_id] / 1e6:.1f} MFLOP per image against the best trial's "
        f"{costs[best.trial_id] / 1e6:.1f})"
    )
    return chosen, reason


def run_final_stage(
    cfg: DictConfig,
    dataset: Dataset,
    search: SearchResult,
    tracker: MLflowTracker | None = None,
) -> FinalResult:
    """Retrain the chosen trial's configuration on train + validation, test it, register it.

    Args:
        cfg: The validated root config.
        dataset: The dataset the search ran on.
        search: The search's result (its best trial, or the one ``final.choose`` picks, is
            retrained).
        tracker: The search's MLflow tracker; None when tracking is off (nothing registered).

    Returns:
        The test metrics and the registry's decision.
    """
    start = time.perf_counter()
    training = OmegaConf.to_container(cfg.training, resolve=True)
    search_space = OmegaConf.to_container(cfg.search_space, resolve=True)
    hypermodel = CNNHyperModel(
        search_space, dataset.input_shape, dataset.num_classes, training["precision"]
    )
    chosen, chosen_by = choose_trial(search, cfg.final.choose, hypermodel)
    log.info("final stage: retraining trial %s, %s", chosen.trial_id, chosen_by)
    values = {k: v for k, v in chosen.hyperparameters.items() if not k.startswith("tuner/")}
    epochs = cfg.final.epochs or (chosen.best_step + 1 if chosen.best_step is not None else None)
    epochs = epochs or training["epochs"]

    seeds = list(cfg.final.seeds or [training["seed"]])
    trained = [
        _train_and_test(hypermodel, values, dataset, {**training, "seed": seed}, epochs)
        for seed in seeds
    ]
    model, history, evaluation = trained[0]  # the first seed's model is the one registered
    if cfg.final.ensemble:
        model = ensemble_of([member for member, _, _ in trained], seeds, hypermodel.name)
        evaluation = evaluate(model, dataset.test, dataset.num_classes)
    interval = evaluation.interval
    final = FinalResult(
        test_accuracy=evaluation.accuracy,
        test_loss=evaluation.loss,
        test_errors=interval.errors,
        test_size=interval.total,
        test_accuracy_ci_low=interval.ci_low,
        test_accuracy_ci_high=interval.ci_high,
        per_class_accuracy=evaluation.per_class_accuracy,
        epochs=epochs,
        hyperparameters=values,
        seeds=seeds,
        seed_test_accuracies=[result.accuracy for _, _, result in trained],
        ensemble=bool(cfg.final.ensemble),
        trial_id=chosen.trial_id,
        chosen_by=chosen_by,
    )
    log.info(
        "final stage: test accuracy %s, loss %.4f%s",
        interval,
        final.test_loss,
        f"; over seeds {seeds}: mean {final.test_accuracy_mean:.4f}, "
        f"std {final.test_accuracy_std:.4f}"
        if len(seeds) > 1
        else "",
    )
    test = dataset.test

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
            _register(cfg, tracker, model, final, evaluation, dataset)
        else:
            final.decision = "not registered (final.register=false)"
    final.wall_time_s = round(time.perf_counter() - start, 2)
    facts = {
        **final.to_dict(),
        "model_name": cfg.final.model_name,
        "epochs_chosen_by": "final.epochs"
        if cfg.final.epochs
        else "the chosen trial's best epoch count",
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


def ensemble_of(members: list[keras.Model], seeds: list[int], name: str) -> keras.Model:
    """One Keras model whose output is the mean of the members' softmax outputs.

    Each member is wrapped under its seed's name (nested models must be named uniquely);
    the wrappers share the members' layers and weights, nothing is copied or retrained.
    """
    inputs = keras.Input(shape=members[0].input_shape[1:])
    outputs = [
        keras.Model(member.input, member.output, name=f"seed_{seed}")(inputs)
        for member, seed in zip(members, seeds, strict=True)
    ]
    return keras.Model(inputs, keras.layers.Average()(outputs), name=f"{name}_ensemble")


def _train_and_test(
    hypermodel: CNNHyperModel,
    values: dict[str, Any],
    dataset: Dataset,
    training: dict[str, Any],
    epochs: int,
) -> tuple[keras.Model, dict[str, list[float]], Evaluation]:
    """Train one model from scratch on train + validation with ``training["seed"]``, test it."""
    configure_backend(training)
    hp = fixed_hyperparameters(values)
    model = hypermodel.build(hp)
    images = np.concatenate([dataset.train.images, dataset.val.images])
    labels = np.concatenate([dataset.train.labels, dataset.val.labels])
    log.info(
        "final stage: training on %d examples for %d epochs, seed %d",
        len(labels),
        epochs,
        training["seed"],
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
        callbacks=[StopWhenAsked()],
    ).history
    return model, history, evaluate(model, dataset.test, dataset.num_classes)


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
    params.append(Param("final_trial_id", str(final.trial_id)))
    params.append(Param("final_chosen_by", final.chosen_by[:500]))
    params.append(Param("final_seeds", ",".join(map(str, final.seeds))))
    headline = [
        Metric(name, float(value), now, 0)
        for name, value in {
            "test_accuracy": final.test_accuracy,
            "test_loss": final.test_loss,
            "test_errors": final.test_errors,
            "test_accuracy_ci_low": final.test_accuracy_ci_low,
            "test_accuracy_ci_high": final.test_accuracy_ci_high,
            "test_accuracy_mean": final.test_accuracy_mean,
            "test_accuracy_std": final.test_accuracy_std,
        }.items()
    ]
    metrics = [*headline]
    metrics += [
        Metric(f"test_accuracy_digit_{digit}", accuracy, now, 0)
        for digit, accuracy in enumerate(final.per_class_accuracy)
    ]
    metrics += [
        Metric(f"test_accuracy_seed_{seed}", accuracy, now, 0)
        for seed, accuracy in zip(final.seeds, final.seed_test_accuracies, strict=True)
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
    evaluation: Evaluation,
    dataset: Dataset,
) -> None:
    """Log and register the model, then let the registry decide on its aliases.

    Idempotent across a resume: a version an earlier attempt of this search's final stage
    registered (a crash before its aliases were set) is the one decided on, not a copy.
    """
    client, name, test = tracker.client, cfg.final.model_name, dataset.test
    version = registry.registered_for(client, name, tracker.parent_run_id)
    if version is None:
        source = registry.log_model(client, final.run_id, model, test.images[:5])
        version = registry.register(client, name, source, final.run_id, tracker.parent_run_id)
    else:
        log.info("final stage: version %s was registered by an earlier attempt", version)

    def champion_right(champion_version: str) -> np.ndarray | None:
        try:
            champion = registry.load_version(tracker.tracking_uri, name, champion_version)
            return evaluate(champion, test, dataset.num_classes).right
        except (OSError, ValueError) as error:  # e.g. a model trained for other inputs
            log.warning("cannot evaluate %s version %s here: %s", name, champion_version, error)
            return None

    outcome = registry.promote(
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
    registry.record_promotion(client, final.run_id, outcome)
    final.model_version = outcome.model_version
    final.promoted = outcome.promoted
    final.decision = outcome.decision
    final.champion_version = outcome.champion_version
    if outcome.champion_accuracy is not None:
        final.champion_accuracy = outcome.champion_accuracy.value
    if outcome.comparison is not None:
        final.mcnemar = outcome.comparison.to_dict()
